// dist_env.cpp — the rank's place from the launcher's environment (torchrun, Slurm), the shared failure state, and
// the bucketed gradient all-reduce. See dist.h.
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <mutex>

#include "dist.h"
#include "error.h"

namespace hq {

namespace {

const char* kEnvHint = "launch with torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), srun "
                       "(SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID) or `hqlora run --gpus N`";

long long env_int(const std::function<const char*(const char*)>& get, const char* name, long long lo, long long hi,
                  long long dflt, bool required) {
    const char* s = get(name);
    if (!s || !*s) {
        if (required) throw Error("E_DIST", HQ_MSG(name << " is not set"), {}, kEnvHint);
        return dflt;
    }
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        throw Error("E_DIST", HQ_MSG(name << "=\"" << s << "\" is not an integer in [" << lo << ", " << hi << "]"), {},
                    kEnvHint);
    return v;
}

std::mutex g_fail_mu;
std::atomic<bool> g_failed{false};
DistFailure g_failure;

}  // namespace

std::string slurm_first_host(const std::string& list) {
    // The first entry ends at the first ',' outside brackets; a bracket range "pre[03-07,12]suf" expands to its first
    // number, zero padding kept.
    std::string out;
    size_t i = 0;
    while (i < list.size() && list[i] != ',') {
        if (list[i] == '[') {
            size_t j = i + 1;
            while (j < list.size() && list[j] != '-' && list[j] != ',' && list[j] != ']') out += list[j++];
            const size_t close = list.find(']', i);
            if (close == std::string::npos)
                throw Error("E_DIST", HQ_MSG("SLURM_JOB_NODELIST \"" << list << "\" has an unclosed '['"), {},
                            "set MASTER_ADDR to the first node's address");
            i = close + 1;
            continue;
        }
        out += list[i++];
    }
    return out;
}

DistEnv dist_env_from(const std::function<const char*(const char*)>& get) {
    DistEnv e;
    const auto has = [&](const char* n) { const char* s = get(n); return s && *s; };
    if (has("WORLD_SIZE") || has("RANK")) {
        e.source = "torchrun";
        e.world = static_cast<int>(env_int(get, "WORLD_SIZE", 1, 65536, 1, true));
        e.rank = static_cast<int>(env_int(get, "RANK", 0, e.world - 1, 0, true));
        e.local_rank = static_cast<int>(env_int(get, "LOCAL_RANK", 0, 65535, e.rank, false));
    } else if (has("SLURM_PROCID") && has("SLURM_NTASKS")) {
        e.source = "slurm";
        e.world = static_cast<int>(env_int(get, "SLURM_NTASKS", 1, 65536, 1, true));
        e.rank = static_cast<int>(env_int(get, "SLURM_PROCID", 0, e.world - 1, 0, true));
        e.local_rank = static_cast<int>(env_int(get, "SLURM_LOCALID", 0, 65535, 0, false));
    } else {
        return e;
    }
    if (has("MASTER_ADDR")) {
        e.master_addr = get("MASTER_ADDR");
    } else if (e.source == "slurm" && (has("SLURM_JOB_NODELIST") || has("SLURM_NODELIST"))) {
        e.master_addr = slurm_first_host(has("SLURM_JOB_NODELIST") ? get("SLURM_JOB_NODELIST") : get("SLURM_NODELIST"));
    } else if (e.world > 1) {
        throw Error("E_DIST", "MASTER_ADDR is not set (the address where rank 0 listens for the rendezvous)", {},
                    "export MASTER_ADDR=<rank 0's host> (127.0.0.1 on one machine)");
    }
    e.master_port = static_cast<int>(env_int(get, "MASTER_PORT", 1, 65535, 29500, false));
    return e;
}

DistEnv dist_env_from_environment() {
    return dist_env_from([](const char* n) { return std::getenv(n); });
}

bool dist_set_failure(int rank, const std::string& message) {
    std::lock_guard<std::mutex> lk(g_fail_mu);
    if (g_failed.load()) return false;
    g_failure = {rank, message};
    g_failed.store(true);
    return true;
}

bool dist_failed() { return g_failed.load(); }

DistFailure dist_failure() {
    std::lock_guard<std::mutex> lk(g_fail_mu);
    return g_failure;
}

void dist_check_failure() {
    if (!g_failed.load()) return;
    const DistFailure f = dist_failure();
    throw Error("E_DIST", HQ_MSG("rank " << f.rank << " failed: " << f.message), {},
                "every rank stopped; the last complete checkpoint is intact: fix the cause, then rerun with --resume");
}

size_t all_reduce_buckets(Collective& c, float* data, size_t n, size_t bucket_bytes, void* stream) {
    const size_t per = bucket_bytes == 0 ? std::max<size_t>(1, n) : std::max<size_t>(1, bucket_bytes / sizeof(float));
    for (size_t off = 0; off < n; off += per) c.all_reduce_sum(data + off, std::min(per, n - off), stream);
    return n * sizeof(float);
}

OverlappedBuckets::OverlappedBuckets(Collective& c, float* data, size_t n, size_t bucket_bytes, void* stream)
    : c_(c), data_(data), n_(n), bucket_floats_(bucket_bytes / sizeof(float)), stream_(stream), pending_lo_(n),
      pending_hi_(n) {}

OverlappedBuckets::~OverlappedBuckets() {
    if (!finished_ && buckets_ > 0) c_.cancel_all_reduces();
}

void OverlappedBuckets::layer_ready(size_t offset, size_t n) {
    // Ranges come last layer first: each one ends where the pending one begins.
    HQ_ASSERT(offset + n == pending_lo_ && pending_lo_ <= n_);
    pending_lo_ = offset;
    if (pending_hi_ - pending_lo_ >= bucket_floats_) start(pending_lo_, pending_hi_);
}

void OverlappedBuckets::start(size_t lo, size_t hi) {
    if (hi > lo) {
        c_.start_all_reduce_sum(data_ + lo, hi - lo, stream_);
        ++buckets_;
    }
    pending_lo_ = pending_hi_ = lo;
}

size_t OverlappedBuckets::finish() {
    start(0, pending_hi_);
    c_.wait_all_reduces(stream_);
    finished_ = true;
    return n_ * sizeof(float);
}

}  // namespace hq
