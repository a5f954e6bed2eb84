// trainer_child.h — the real hqlora-train binary (HQ_TRAIN_BIN) as a child process, for the tests that drive it:
// spawn with stdout (events) and stderr (log) redirected to files, wait, and read the JSON-line events back.
#pragma once
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace hq_test {

struct Child {
    pid_t pid = -1;
    std::string out_path;   // the child's stdout (events); its stderr goes to out_path + ".err"
};

inline Child spawn(const std::vector<std::string>& args, const std::string& out_path) {
    static const std::string bin = HQ_TRAIN_BIN;
    Child c;
    c.out_path = out_path;
    c.pid = fork();
    REQUIRE(c.pid >= 0);
    if (c.pid == 0) {
        int fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        int err = open((out_path + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(err, 2);
        std::vector<char*> argv;
        argv.push_back(const_cast<char*>(bin.c_str()));
        for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        execv(bin.c_str(), argv.data());
        _exit(127);
    }
    return c;
}

// Exit code, or 128 + signal.
inline int wait_child(const Child& c) {
    int st = 0;
    REQUIRE(waitpid(c.pid, &st, 0) == c.pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

inline std::vector<nlohmann::json> read_events(const std::string& path) {
    std::vector<nlohmann::json> ev;
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
        CHECK_MESSAGE(!j.is_discarded(), "not a JSON line: " << line);
        if (!j.is_discarded()) ev.push_back(j);
    }
    return ev;
}

inline std::vector<nlohmann::json> of_type(const std::vector<nlohmann::json>& ev, const std::string& t) {
    std::vector<nlohmann::json> r;
    for (const auto& e : ev)
        if (e.value("type", "") == t) r.push_back(e);
    return r;
}

}  // namespace hq_test
