// events.cpp — JSON-lines event stream to stdout and <run>/events.jsonl.
#include "events.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>

namespace hq {

nlohmann::json json_number(double x) {
    if (std::isnan(x)) return "NaN";
    if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
    return x;
}

nlohmann::json encode_non_finite(const nlohmann::json& j) {
    if (j.is_number_float()) return json_number(j.get<double>());
    if (j.is_object()) {
        nlohmann::json out = nlohmann::json::object();
        for (auto it = j.begin(); it != j.end(); ++it) out[it.key()] = encode_non_finite(it.value());
        return out;
    }
    if (j.is_array()) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& v : j) out.push_back(encode_non_finite(v));
        return out;
    }
    return j;
}

double unix_time_s() {
    using namespace std::chrono;
    return duration_cast<duration<double>>(system_clock::now().time_since_epoch()).count();
}

nlohmann::json where_json(const Where& w) {
    nlohmann::json j = nlohmann::json::object();
    if (!w.file.empty()) j["file"] = w.file;
    if (!w.tensor.empty()) j["tensor"] = w.tensor;
    if (!w.key.empty()) j["key"] = w.key;
    if (w.offset >= 0) j["offset"] = w.offset;
    if (w.line >= 1) j["line"] = w.line;
    return j;
}

EventSink::EventSink(std::FILE* out) : out_(out) {}

EventSink::~EventSink() { close_log(); }

void EventSink::open_log(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    if (log_fd_ >= 0) ::close(log_fd_);
    log_fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd_ < 0)
        throw Error("E_IO", HQ_MSG("cannot open event log " << path << ": " << std::strerror(errno)),
                    Where{path, "", "", -1, -1}, "check that the run folder is writable");
    log_path_ = path;
    // A run killed inside a write (or a full disk) can leave a last line without its newline. The next event must not
    // be glued onto it: end that line first, so readers skip one malformed line and keep every later event.
    struct stat st;
    char last = '\n';
    if (::fstat(log_fd_, &st) == 0 && st.st_size > 0 && ::pread(log_fd_, &last, 1, st.st_size - 1) == 1 &&
        last != '\n') {
        ssize_t n;
        do n = ::write(log_fd_, "\n", 1);
        while (n < 0 && errno == EINTR);
    }
}

void EventSink::close_log() {
    std::lock_guard<std::mutex> lock(mu_);
    if (log_fd_ >= 0) ::close(log_fd_);
    log_fd_ = -1;
    log_path_.clear();
}

std::string EventSink::emit(const std::string& type, const nlohmann::json& fields) {
    nlohmann::json ev = nlohmann::json::object();
    ev["v"] = 1;
    ev["type"] = type;
    ev["time"] = unix_time_s();
    if (fields.is_object())
        for (auto it = fields.begin(); it != fields.end(); ++it) ev[it.key()] = it.value();
    // Invalid UTF-8 (e.g. from a path) is replaced rather than throwing: an event must never fail to print.
    std::string line = encode_non_finite(ev).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::string with_nl = line + "\n";
    std::lock_guard<std::mutex> lock(mu_);
    if (out_) {
        std::fwrite(with_nl.data(), 1, with_nl.size(), out_);
        std::fflush(out_);
    }
    if (log_fd_ >= 0) {
        // One write(2) per line: with O_APPEND the line lands contiguously at the end of the file.
        const char* p = with_nl.data();
        size_t left = with_nl.size();
        while (left > 0) {
            ssize_t n = ::write(log_fd_, p, left);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;  // the log is a copy of stdout: a full disk must not kill the run here
            p += n;
            left -= static_cast<size_t>(n);
        }
    }
    return line;
}

std::string EventSink::emit_error(const Error& e, const nlohmann::json& extra_where) {
    nlohmann::json where = where_json(e.where());
    for (auto it = extra_where.begin(); it != extra_where.end(); ++it) where[it.key()] = it.value();
    return emit("error", {{"code", e.code()}, {"message", e.what()}, {"where", where}, {"hint", e.hint()}});
}

std::string EventSink::emit_warning(const std::string& code, const std::string& message) {
    return emit("warning", {{"code", code}, {"message", message}});
}

}  // namespace hq
