// dist_launch.cpp — the one-host launcher and supervisor of a data-parallel world (dist_launch.h).
#include "dist_launch.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <nlohmann/json.hpp>

#include "error.h"
#include "trainer.h"

namespace hq {

namespace {

using Clock = std::chrono::steady_clock;

// Signals received since the last look, one bit each (a lock-free atomic: safe in a handler).
std::atomic<unsigned> g_pending{0};
extern "C" void on_launcher_signal(int sig) { g_pending.fetch_or(1u << sig); }

struct Rank {
    int index = 0;
    pid_t pid = -1;
    int out_fd = -1, err_fd = -1;   // read ends of its stdout / stderr pipes (rank 0's stderr is ours: -1)
    std::string out_buf, err_buf;   // partial lines
    bool exited = false;
    int status = 0;                 // waitpid's
    std::string error;              // its first error event, "CODE: message"
};

int free_port() {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t n = sizeof a;
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n) != 0) {
        const int e = errno;
        if (fd >= 0) ::close(fd);
        throw Error("E_DIST", HQ_MSG("cannot find a free TCP port on 127.0.0.1: " << std::strerror(e)), {},
                    "set MASTER_PORT to a free port");
    }
    ::close(fd);
    return ntohs(a.sin_port);
}

std::string self_exe() {
    char buf[PATH_MAX];
    const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) throw Error("E_DIST", "cannot find this executable (/proc/self/exe) to start the ranks", {}, "");
    return std::string(buf, static_cast<size_t>(n));
}

// Forks rank r: the launch environment of dist.h, stdout (and for r > 0 stderr) into pipes, death with the launcher.
void spawn(Rank& r, int nproc, const std::string& exe, const std::vector<std::string>& args, int port) {
    int out[2] = {-1, -1}, err[2] = {-1, -1};
    if (pipe2(out, O_CLOEXEC) != 0 || (r.index > 0 && pipe2(err, O_CLOEXEC) != 0))
        throw Error("E_DIST", HQ_MSG("cannot create the pipes of rank " << r.index << ": " << std::strerror(errno)), {},
                    "the process may have run out of file descriptors (ulimit -n)");
    std::vector<std::string> env = {"RANK=" + std::to_string(r.index), "LOCAL_RANK=" + std::to_string(r.index),
                                    "WORLD_SIZE=" + std::to_string(nproc), "LOCAL_WORLD_SIZE=" + std::to_string(nproc),
                                    "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + std::to_string(port)};
    std::vector<char*> argv = {const_cast<char*>(exe.c_str())};
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) throw Error("E_DIST", HQ_MSG("cannot start rank " << r.index << ": fork: " << std::strerror(errno)), {}, "");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);   // the launcher died before prctl
        dup2(out[1], 1);
        if (err[1] >= 0) dup2(err[1], 2);
        for (std::string& e : env) putenv(e.data());
        signal(SIGPIPE, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        execv(exe.c_str(), argv.data());
        dprintf(2, "hqlora-train: cannot start rank %d: %s: %s\n", r.index, exe.c_str(), std::strerror(errno));
        _exit(127);
    }
    ::close(out[1]);
    if (err[1] >= 0) ::close(err[1]);
    r.pid = pid;
    r.out_fd = out[0];
    r.err_fd = err[0];
}

// "CODE: message" of an error event line, or "" when the line is not one.
std::string error_of(const std::string& line) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || j.value("type", "") != "error") return "";
    return j.value("code", std::string("E_?")) + ": " + j.value("message", std::string());
}

void on_line(Rank& r, bool is_stdout, const std::string& line, bool* root_error) {
    if (is_stdout) {
        const std::string e = error_of(line);
        if (!e.empty() && r.error.empty()) r.error = e;
        if (r.index == 0) {   // the run's events, unchanged
            std::fwrite(line.data(), 1, line.size(), stdout);
            std::fputc('\n', stdout);
            std::fflush(stdout);
            if (!e.empty()) *root_error = true;
            return;
        }
    }
    std::fprintf(stderr, "[rank %d] %s\n", r.index, line.c_str());
}

// Reads what fd has; false at its end (the fd is then closed and set to -1).
bool drain(Rank& r, bool is_stdout, bool* root_error) {
    int& fd = is_stdout ? r.out_fd : r.err_fd;
    std::string& buf = is_stdout ? r.out_buf : r.err_buf;
    char chunk[65536];
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
    if (n <= 0) {
        if (!buf.empty()) on_line(r, is_stdout, buf, root_error);
        buf.clear();
        ::close(fd);
        fd = -1;
        return false;
    }
    buf.append(chunk, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1)
        on_line(r, is_stdout, buf.substr(start, nl - start), root_error);
    buf.erase(0, start);
    return true;
}

const char* sig_name(int s) {
    switch (s) {
        case SIGKILL: return "SIGKILL";
        case SIGTERM: return "SIGTERM";
        case SIGINT: return "SIGINT";
        case SIGSEGV: return "SIGSEGV";
        case SIGBUS: return "SIGBUS";
        case SIGABRT: return "SIGABRT";
        case SIGFPE: return "SIGFPE";
        case SIGILL: return "SIGILL";
        case SIGHUP: return "SIGHUP";
        case SIGPIPE: return "SIGPIPE";
    }
    return "a signal";
}

bool failed(int status) {
    if (WIFSIGNALED(status)) return true;
    const int c = WEXITSTATUS(status);
    return c != 0 && c != 3 && c != 4;   // done, stopped, non-finite (every rank sees the same loss)
}

std::string how(int status) {
    if (WIFSIGNALED(status)) {
        const int s = WTERMSIG(status);
        return HQ_MSG("was killed by " << sig_name(s) << (s == SIGKILL || s == SIGTERM ? "" : HQ_MSG(" (" << s << ")")) << (s == SIGKILL ? " (on Linux most often the out-of-memory "
                                                                             "killer: dmesg says so)" : ""));
    }
    return HQ_MSG("exited with code " << WEXITSTATUS(status));
}

void forward_signals(std::vector<Rank>& ranks) {
    const unsigned bits = g_pending.exchange(0);
    for (int sig : {SIGINT, SIGTERM, SIGUSR1}) {
        if (!(bits & (1u << sig))) continue;
        for (const Rank& r : ranks)
            if (!r.exited) kill(r.pid, sig);
    }
}

struct Outcome {
    int culprit = -1;        // the first rank that failed
    bool root_error = false;   // rank 0 printed an error event
};

// The supervision loop: pass output through, reap ranks, stop the world after the first failure.
Outcome supervise(std::vector<Rank>& ranks, double grace_s) {
    Outcome o;
    Clock::time_point failed_at{};
    bool killed_rest = false;
    for (;;) {
        forward_signals(ranks);
        std::vector<pollfd> pf;
        std::vector<std::pair<Rank*, bool>> who;
        for (Rank& r : ranks) {
            if (r.out_fd >= 0) {
                pf.push_back({r.out_fd, POLLIN, 0});
                who.emplace_back(&r, true);
            }
            if (r.err_fd >= 0) {
                pf.push_back({r.err_fd, POLLIN, 0});
                who.emplace_back(&r, false);
            }
        }
        bool all_exited = true;
        for (const Rank& r : ranks) all_exited = all_exited && r.exited;
        if (all_exited && pf.empty()) break;
        if (poll(pf.data(), pf.size(), 100) > 0)
            for (size_t i = 0; i < pf.size(); ++i)
                if (pf[i].revents) drain(*who[i].first, who[i].second, &o.root_error);
        int st = 0;
        for (pid_t pid; (pid = waitpid(-1, &st, WNOHANG)) > 0;) {
            for (Rank& r : ranks) {
                if (r.pid != pid) continue;
                r.exited = true;
                r.status = st;
                if (failed(st) && o.culprit < 0) {
                    o.culprit = r.index;
                    failed_at = Clock::now();
                    std::fprintf(stderr, "[hqlora] launcher: rank %d (pid %d) %s; the other ranks stop\n", r.index,
                                 static_cast<int>(pid), how(st).c_str());
                }
            }
        }
        if (o.culprit >= 0 && !killed_rest &&
            std::chrono::duration<double>(Clock::now() - failed_at).count() > grace_s) {
            killed_rest = true;
            for (const Rank& r : ranks) {
                if (r.exited) continue;
                std::fprintf(stderr, "[hqlora] launcher: rank %d (pid %d) still runs %.0f s after rank %d failed: "
                             "killed\n", r.index, static_cast<int>(r.pid), grace_s, o.culprit);
                kill(r.pid, SIGKILL);
            }
        }
    }
    return o;
}

}  // namespace

int dist_local_world() {
    for (const char* name : {"LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"}) {
        const char* v = std::getenv(name);
        if (!v || !*v) continue;
        char* end = nullptr;
        const long n = std::strtol(v, &end, 10);
        if (end && *end == '\0' && n >= 1 && n <= 4096) return static_cast<int>(n);
    }
    return 1;
}

int launch_local_world(const LocalLaunch& spec, EventSink& events) {
    const std::string exe = self_exe();
    const char* mp = std::getenv("MASTER_PORT");
    const int port = mp && *mp ? std::atoi(mp) : free_port();
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_launcher_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (int sig : {SIGINT, SIGTERM, SIGUSR1}) sigaction(sig, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
    std::fprintf(stderr, "[hqlora] launcher: %d ranks on this host, rendezvous at 127.0.0.1:%d\n", spec.nproc, port);

    std::vector<Rank> ranks(static_cast<size_t>(spec.nproc));
    for (int k = 0; k < spec.nproc; ++k) {
        ranks[k].index = k;
        try {
            spawn(ranks[k], spec.nproc, exe, spec.args, port);
        } catch (...) {
            for (int j = 0; j < k; ++j) kill(ranks[j].pid, SIGKILL);
            throw;
        }
    }
    const Outcome o = supervise(ranks, spec.grace_s);
    if (o.culprit < 0) {
        const int st = ranks[0].status;
        return WIFEXITED(st) ? WEXITSTATUS(st) : kExitError;
    }
    if (o.root_error) return kExitError;   // rank 0 has said what failed (it names the failing rank)
    const Rank& r = ranks[static_cast<size_t>(o.culprit)];
    const std::string msg = HQ_MSG("rank " << r.index << " of " << spec.nproc << " (pid " << r.pid << ") "
                                            << how(r.status) << (r.error.empty() ? "" : ": " + r.error));
    const std::string hint = "the trainer log has each rank's lines ([rank k]); rerun with --resume to continue "
                             "from the last complete checkpoint";
    if (!spec.events_log.empty() && access(spec.events_log.c_str(), F_OK) == 0) {
        try {
            events.open_log(spec.events_log);
        } catch (const Error&) {   // stdout still gets the event
        }
    }
    events.emit_error(Error("E_DIST", msg, {}, hint));
    std::fprintf(stderr, "[hqlora] error E_DIST: %s\n  hint: %s\n", msg.c_str(), hint.c_str());
    return kExitError;
}

}  // namespace hq
