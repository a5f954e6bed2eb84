// dist_rendezvous.cpp — the TCP rendezvous at MASTER_ADDR:MASTER_PORT and the control channel's watchdog (dist.h).
//
// Wire format, both directions: 1 type byte | u32 little-endian length | payload.
//   'H' hello (rank → 0): the rank, decimal          'D' data (0 → rank): broadcast / all_gather result
//   'G' gather item (rank → 0)                        'F' failure (rank → 0): the rank's error message
//   'A' abort (0 → rank): "<failed rank>\n<message>"  'B' bye (rank → 0): a normal end follows
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include <nlohmann/json.hpp>

#include "dist.h"
#include "error.h"
#include "le_bytes.h"

namespace hq {

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

Error dist_error(const std::string& msg, const std::string& hint) { return Error("E_DIST", msg, {}, hint); }

// Waits until fd is readable; false on timeout. timeout_s < 0: forever.
bool wait_readable(int fd, double timeout_s) {
    pollfd p{fd, POLLIN, 0};
    const int ms = timeout_s < 0 ? -1 : static_cast<int>(timeout_s * 1000);
    for (;;) {
        const int r = poll(&p, 1, ms);
        if (r < 0 && errno == EINTR) continue;
        return r > 0;
    }
}

// Reads exactly n bytes; false on EOF or error.
bool read_all(int fd, char* buf, size_t n) {
    while (n > 0) {
        const ssize_t r = ::read(fd, buf, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        buf += r;
        n -= static_cast<size_t>(r);
    }
    return true;
}

bool write_all(int fd, const char* buf, size_t n) {
    while (n > 0) {
        const ssize_t r = ::send(fd, buf, n, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        buf += r;
        n -= static_cast<size_t>(r);
    }
    return true;
}

// One message; false on EOF. Messages are small (ids, names, error texts): at most 16 MiB.
bool read_msg(int fd, char* type, std::string* payload) {
    char head[5];
    if (!read_all(fd, head, 5)) return false;
    *type = head[0];
    const uint32_t n = le::rd_u32(std::string(head + 1, 4), 0);
    if (n > (16u << 20)) return false;
    payload->resize(n);
    return n == 0 || read_all(fd, payload->data(), n);
}

// A message of one of `types` within timeout_s, else E_DIST naming what was awaited from whom.
std::string expect_msg(int fd, const std::string& types, double timeout_s, const std::string& what) {
    if (!wait_readable(fd, timeout_s))
        throw dist_error(HQ_MSG("timed out after " << timeout_s << " s waiting for " << what),
                         "check that every rank was started and can reach MASTER_ADDR:MASTER_PORT; raise "
                         "distributed.timeout_s for slow starts");
    char t = 0;
    std::string p;
    if (!read_msg(fd, &t, &p))
        throw dist_error(HQ_MSG("the connection closed while waiting for " << what << ": that rank exited"),
                         "see that rank's log for why; every rank stopped: rerun with --resume");
    if (t == 'A') {
        const size_t nl = p.find('\n');
        throw dist_error(HQ_MSG("rank " << p.substr(0, nl) << " failed: " << p.substr(nl + 1)),
                         "every rank stopped: fix the cause, then rerun with --resume");
    }
    if (types.find(t) == std::string::npos)
        throw dist_error(HQ_MSG("unexpected rendezvous message '" << t << "' while waiting for " << what),
                         "all ranks must run the same hqlora-train version");
    return p;
}

}  // namespace

void Rendezvous::send_msg(int fd, char type, const std::string& payload) {
    std::string m(1, type);
    le::wr_u32(m, static_cast<uint32_t>(payload.size()));
    m += payload;
    std::lock_guard<std::mutex> lk(send_mu_);
    write_all(fd, m.data(), m.size());   // a dead peer is the watchdog's to report
}

Rendezvous::Rendezvous(const DistEnv& env, double timeout_s) : env_(env) {
    const auto t0 = Clock::now();
    const std::string at = HQ_MSG(env.master_addr << ":" << env.master_port);
    said_bye_.assign(static_cast<size_t>(env.world), false);
    if (env.rank == 0) {
        fds_.assign(static_cast<size_t>(env.world), -1);
        listen_fd_ = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool v6 = listen_fd_ >= 0;
        if (!v6) listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (listen_fd_ < 0) throw dist_error(HQ_MSG("socket(): " << std::strerror(errno)), "");
        int one = 1, zero = 0;
        setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        int rc;
        if (v6) {
            setsockopt(listen_fd_, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);   // v4 and v6 peers
            sockaddr_in6 a{};
            a.sin6_family = AF_INET6;
            a.sin6_addr = in6addr_any;
            a.sin6_port = htons(static_cast<uint16_t>(env.master_port));
            rc = ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
        } else {
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_addr.s_addr = htonl(INADDR_ANY);
            a.sin_port = htons(static_cast<uint16_t>(env.master_port));
            rc = ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
        }
        if (rc != 0 || ::listen(listen_fd_, 128) != 0)
            throw dist_error(HQ_MSG("rank 0 cannot listen on port " << env.master_port << ": " << std::strerror(errno)),
                             "another run (or program) uses MASTER_PORT: choose a free one");
        int joined = 1;
        while (joined < env.world) {
            const double left = timeout_s - since(t0);
            if (left <= 0 || !wait_readable(listen_fd_, left)) {
                std::string missing;
                for (int k = 1; k < env.world; ++k)
                    if (fds_[k] < 0) missing += (missing.empty() ? "" : ", ") + std::to_string(k);
                throw dist_error(HQ_MSG("rendezvous at " << at << ": ranks " << missing << " did not connect within "
                                                         << timeout_s << " s"),
                                 "start every rank with the same MASTER_ADDR/MASTER_PORT/WORLD_SIZE; check that the "
                                 "port is reachable from every node (firewall)");
            }
            const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) continue;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            const std::string hello = expect_msg(fd, "H", std::max(1.0, timeout_s - since(t0)), "a rank's hello");
            const int k = std::atoi(hello.c_str());
            if (k <= 0 || k >= env.world || fds_[k] >= 0) {
                ::close(fd);
                throw dist_error(HQ_MSG("rendezvous at " << at << ": a process says it is rank \"" << hello << "\" ("
                                                         << (k > 0 && k < env.world ? "twice" : "out of range")
                                                         << " in a world of " << env.world << ")"),
                                 "give every process its own RANK in [0, WORLD_SIZE), with the same WORLD_SIZE");
            }
            fds_[k] = fd;
            ++joined;
        }
        ::close(listen_fd_);
        listen_fd_ = -1;
    } else {
        fds_.assign(1, -1);
        addrinfo hints{}, *res = nullptr;
        hints.ai_socktype = SOCK_STREAM;
        const std::string port = std::to_string(env.master_port);
        const int g = getaddrinfo(env.master_addr.c_str(), port.c_str(), &hints, &res);
        if (g != 0)
            throw dist_error(HQ_MSG("MASTER_ADDR \"" << env.master_addr << "\" does not resolve: " << gai_strerror(g)),
                             "set MASTER_ADDR to rank 0's host name or address");
        int fd = -1;
        while (fd < 0) {
            for (addrinfo* a = res; a && fd < 0; a = a->ai_next) {
                const int s = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
                if (s < 0) continue;
                if (::connect(s, a->ai_addr, a->ai_addrlen) == 0) fd = s;
                else ::close(s);
            }
            if (fd >= 0) break;
            if (since(t0) > timeout_s) {
                freeaddrinfo(res);
                throw dist_error(HQ_MSG("rank " << env.rank << " could not reach rank 0 at " << at << " within "
                                                << timeout_s << " s"),
                                 "start rank 0 too, with the same MASTER_ADDR/MASTER_PORT; check the firewall");
            }
            usleep(50 * 1000);
        }
        freeaddrinfo(res);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fds_[0] = fd;
        send_msg(fd, 'H', std::to_string(env.rank));
    }
}

Rendezvous::~Rendezvous() {
    stop_.store(true);
    if (watchdog_.joinable()) watchdog_.join();
    for (int fd : fds_)
        if (fd >= 0) ::close(fd);
    if (listen_fd_ >= 0) ::close(listen_fd_);
}

std::string Rendezvous::broadcast(const std::string& blob) {
    if (env_.rank == 0) {
        for (int k = 1; k < env_.world; ++k) send_msg(fds_[k], 'D', blob);
        return blob;
    }
    return expect_msg(fds_[0], "D", 600.0, "rank 0's broadcast");
}

std::vector<std::string> Rendezvous::all_gather(const std::string& item) {
    std::vector<std::string> all(static_cast<size_t>(env_.world));
    if (env_.rank == 0) {
        all[0] = item;
        for (int k = 1; k < env_.world; ++k)
            all[k] = expect_msg(fds_[k], "G", 600.0, HQ_MSG("rank " << k << "'s setup"));
        broadcast(nlohmann::json(all).dump());
        return all;
    }
    send_msg(fds_[0], 'G', item);
    return nlohmann::json::parse(broadcast("")).get<std::vector<std::string>>();
}

void Rendezvous::start_watchdog(std::function<void()> on_failure, double grace_s) {
    on_failure_ = std::move(on_failure);
    grace_s_ = grace_s;
    watchdog_ = std::thread([this] { watch(); });
}

void Rendezvous::report_failure(const std::string& message) {
    if (!dist_set_failure(env_.rank, message)) return;   // someone else's failure came first: nothing to add
    if (env_.rank == 0) {
        for (int k = 1; k < env_.world; ++k)
            if (fds_[k] >= 0) send_msg(fds_[k], 'A', "0\n" + message);
    } else if (fds_[0] >= 0) {
        send_msg(fds_[0], 'F', message);
    }
}

void Rendezvous::finish() {
    stop_.store(true);
    if (watchdog_.joinable()) watchdog_.join();
    if (env_.rank == 0) return;   // the destructor closes the sockets: the other ranks' wait ends
    send_msg(fds_[0], 'B', "");
    char t;
    std::string p;
    while (read_msg(fds_[0], &t, &p)) {}   // until rank 0 closes
}

void Rendezvous::watch() {
    const int W = env_.world;
    std::vector<pollfd> p;
    std::vector<int> who;
    for (int k = 0; k < static_cast<int>(fds_.size()); ++k)
        if (fds_[k] >= 0) {
            p.push_back({fds_[k], POLLIN, 0});
            who.push_back(env_.rank == 0 ? k : 0);
        }
    Clock::time_point failed_at{};
    bool announced = false;
    while (!stop_.load()) {
        if (dist_failed()) {
            if (!announced) {
                announced = true;
                failed_at = Clock::now();
                const DistFailure f = dist_failure();
                if (env_.rank == 0)   // tell everyone; the rank that failed may be gone already (send fails quietly)
                    for (int k = 1; k < W; ++k)
                        if (k != f.rank) send_msg(fds_[k], 'A', HQ_MSG(f.rank << "\n" << f.message));
                if (on_failure_) on_failure_();
            } else if (since(failed_at) > grace_s_) {
                const DistFailure f = dist_failure();
                std::fprintf(stderr, "[hqlora] rank %d: rank %d failed: %s; this rank did not stop within %.0f s, "
                                     "ending it\n", env_.rank, f.rank, f.message.c_str(), grace_s_);
                std::fflush(stderr);
                _exit(1);
            }
        }
        const int r = poll(p.data(), p.size(), 100);
        if (r <= 0) continue;
        for (size_t i = 0; i < p.size(); ++i) {
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            const int k = who[i];
            char t = 0;
            std::string msg;
            if (!read_msg(p[i].fd, &t, &msg)) {
                p[i].fd = -1;   // stop polling it
                if (env_.rank == 0 && said_bye_[k]) continue;
                dist_set_failure(k, "it exited without reporting an error (killed: SIGKILL, the out-of-memory "
                                    "killer, or a crash; see its log)");
                continue;
            }
            if (t == 'B') said_bye_[k] = true;
            else if (t == 'F') dist_set_failure(k, msg);
            else if (t == 'A') {
                const size_t nl = msg.find('\n');
                dist_set_failure(std::atoi(msg.substr(0, nl).c_str()), msg.substr(nl + 1));
            }
        }
    }
}

}  // namespace hq
