// nccl.cpp — the NCCL collective backend (dist.h): the adapter gradients summed over GPUs with ncclAllReduce on the
// model's stream, NCCL loaded at run time (dlopen), the unique id sent through the rendezvous.
//
// Order of a world's start (data_parallel.cpp): construction (before the watchdog; the rendezvous still carries
// messages) loads NCCL, checks that no two ranks share a GPU, and sends rank 0's ncclUniqueId to every rank; start()
// (the watchdog runs) creates the communicator. Where NCCL has non-blocking communicators (2.14+), every call
// returns at once and its end is polled with ncclCommGetAsyncError, so a rank that waits on a dead peer sees the
// failure (dist_failed) or distributed.timeout_s and aborts instead of hanging; older NCCL blocks in init, and the
// watchdog's grace period ends such a rank.
//
// Overlap (start_all_reduce_sum): each bucket is summed on the collective's own stream, after an event recorded on
// the model's stream when the bucket's layers have been enqueued, so the sum runs on the GPU beside the backward of
// the layers below; wait_all_reduces makes the model's stream wait for the NCCL stream before the clipping. Every
// NCCL call of the communicator then goes to that one stream, in the same order on every rank.
//
// Per step: all_reduce_sum enqueues each gradient bucket (fp32, in place) on the model's stream and returns;
// all_reduce_host (the loss sums and flags, fp64) enqueues after them on the same stream, records an event and polls
// it, so the one wait of the step covers every collective of the step. NCCL's sum order is its own (ring or tree),
// so N ranks equal one rank with N× accumulation within fp32 reduction-order noise, not bit for bit as on the CPU
// backend.
#include <dlfcn.h>
#include <glob.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include "cuda_common.h"
#include "cuda_model.h"
#include "dist.h"
#include "nccl_api.h"

namespace hq::cuda {

namespace {

using namespace nccl;
using Clock = std::chrono::steady_clock;

// ---- loading ---------------------------------------------------------------------------------------------------

struct Loaded {
    bool done = false;
    std::string path, error;
    Api api;
};

// libnccl.so.2 on the loader path first (the libnccl2 package, LD_LIBRARY_PATH), then the CUDA toolkit, conda and
// the Python wheel folders (nvidia-nccl-cu12 installs nvidia/nccl/lib/libnccl.so.2).
std::vector<std::string> candidates() {
    std::vector<std::string> c = {"libnccl.so.2", "libnccl.so", "/usr/local/cuda/lib64/libnccl.so.2"};
    std::vector<std::string> patterns;
    auto python_roots = [&](const std::string& root) {
        for (const char* sp : {"site-packages", "dist-packages"})
            patterns.push_back(root + "/python3*/" + sp + "/nvidia/nccl/lib/libnccl.so.2");
    };
    python_roots("/usr/lib");
    python_roots("/usr/local/lib");
    for (const char* env : {"VIRTUAL_ENV", "CONDA_PREFIX"}) {
        const char* v = std::getenv(env);
        if (!v || !*v) continue;
        python_roots(std::string(v) + "/lib");
        c.push_back(std::string(v) + "/lib/libnccl.so.2");
    }
    for (const std::string& p : patterns) {
        glob_t g{};
        if (glob(p.c_str(), GLOB_NOSORT, nullptr, &g) == 0)
            for (size_t i = 0; i < g.gl_pathc; i++) c.emplace_back(g.gl_pathv[i]);
        globfree(&g);
    }
    return c;
}

// Resolves the entry points; returns the first missing required symbol, or "".
std::string resolve(void* h, Api& a) {
    auto sym = [&](const char* name, auto& fn) -> bool {
        void* p = dlsym(h, name);
        fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
        return p != nullptr;
    };
#define HQ_NCCL_SYM(field, name) \
    if (!sym(name, a.field)) return name
    HQ_NCCL_SYM(get_version, "ncclGetVersion");
    HQ_NCCL_SYM(get_unique_id, "ncclGetUniqueId");
    HQ_NCCL_SYM(comm_init_rank, "ncclCommInitRank");
    HQ_NCCL_SYM(comm_destroy, "ncclCommDestroy");
    HQ_NCCL_SYM(comm_abort, "ncclCommAbort");
    HQ_NCCL_SYM(comm_get_async_error, "ncclCommGetAsyncError");
    HQ_NCCL_SYM(get_error_string, "ncclGetErrorString");
    HQ_NCCL_SYM(all_reduce, "ncclAllReduce");
    HQ_NCCL_SYM(broadcast, "ncclBroadcast");
#undef HQ_NCCL_SYM
    sym("ncclCommInitRankConfig", a.comm_init_rank_config);
    sym("ncclCommFinalize", a.comm_finalize);
    sym("ncclGetLastError", a.get_last_error);
    return "";
}

const Loaded& load_nccl() {
    static std::mutex mu;
    static Loaded l;
    std::lock_guard<std::mutex> lock(mu);
    if (l.done) return l;
    l.done = true;
    const char* env = std::getenv("HQ_NCCL");
    std::vector<std::string> names = env && *env ? std::vector<std::string>{env} : candidates();
    std::vector<std::string> tried;
    for (const std::string& n : names) {
        void* h = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            const char* e = dlerror();
            const bool say = (env && *env) || (n.find('/') != std::string::npos && access(n.c_str(), F_OK) == 0);
            tried.push_back(say ? n + " (" + (e ? e : "dlopen failed") + ")" : n);
            continue;
        }
        Api a;
        const std::string missing = resolve(h, a);
        if (!missing.empty()) {
            tried.push_back(n + " (no symbol " + missing + ")");
            dlclose(h);
            continue;
        }
        l.api = a;
        l.path = n;
        return l;   // the handle stays open for the life of the process
    }
    std::string list;
    for (const std::string& t : tried) list += (list.empty() ? "" : ", ") + t;
    l.error = HQ_MSG("NCCL not found (tried: " << (env && *env ? "HQ_NCCL=" : "") << list << ")");
    return l;
}

const char* const kLoadHint =
    "install NCCL 2 (the libnccl2 package, or the Python wheel nvidia-nccl-cu12), or set HQ_NCCL=/path/to/libnccl.so.2; "
    "or train on the CPU backend (hardware.device: cpu)";

// ---- the collective --------------------------------------------------------------------------------------------

class NcclCollective final : public Collective {
  public:
    NcclCollective(Rendezvous& rv, double timeout_s)
        : rank_(rv.env().rank), world_(rv.env().world), timeout_s_(timeout_s) {
        const Loaded& l = load_nccl();
        if (!l.error.empty()) throw Error("E_DIST", l.error, {}, kLoadHint);
        api_ = l.api;
        api_.get_version(&version_);
        check_placement(rv);
        ncclUniqueId id{};
        if (rank_ == 0) check(api_.get_unique_id(&id), "ncclGetUniqueId");
        const std::string blob = rv.broadcast(std::string(id.internal, sizeof id.internal));
        if (blob.size() != sizeof id.internal)
            throw Error("E_DIST", HQ_MSG("rank " << rank_ << ": the NCCL unique id from rank 0 has " << blob.size()
                                         << " bytes, not " << sizeof id.internal),
                        {}, "every rank must run the same hqlora-train build");
        std::memcpy(id.internal, blob.data(), sizeof id.internal);
        id_ = id;
        std::fprintf(stderr, "[hqlora] rank %d: NCCL %d.%d.%d from %s\n", rank_, version_ / 10000, version_ / 100 % 100,
                     version_ % 100, l.path.c_str());
    }

    ~NcclCollective() override {
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (comm_ && !aborted_) {
                if (std::uncaught_exceptions() > 0 || dist_failed()) {
                    api_.comm_abort(comm_);   // destroy would wait for collectives that never end
                } else {
                    if (nonblocking_ && api_.comm_finalize && api_.comm_finalize(comm_) == ncclInProgress) {
                        ncclResult_t st = ncclInProgress;
                        const auto t0 = Clock::now();
                        while (api_.comm_get_async_error(comm_, &st) == ncclSuccess && st == ncclInProgress &&
                               seconds_since(t0) < 10.0)
                            std::this_thread::sleep_for(std::chrono::milliseconds(1));
                    }
                    api_.comm_destroy(comm_);
                }
            }
            comm_ = nullptr;
        }
        for (cudaEvent_t e : ready_) cudaEventDestroy(e);
        if (joined_) cudaEventDestroy(joined_);
        if (comm_stream_) cudaStreamDestroy(comm_stream_);
        if (done_) cudaEventDestroy(done_);
        if (order_) cudaEventDestroy(order_);
        if (pinned_) cudaFreeHost(pinned_);
        if (own_stream_) cudaStreamDestroy(own_stream_);
    }

    std::string name() const override { return "nccl"; }
    int rank() const override { return rank_; }
    int world() const override { return world_; }
    bool on_device() const override { return true; }

    // The communicator (the watchdog runs): non-blocking where NCCL has it, so a rank that never joins is seen.
    void start() override {
        std::unique_lock<std::mutex> lock(mu_);
        if (api_.comm_init_rank_config && version_ >= nccl_version(2, 14, 0)) {
            ncclConfig_v21400 cfg{sizeof(ncclConfig_v21400), kConfigMagic,
                                  static_cast<unsigned>(nccl_version(2, 14, 0)), 0};
            const ncclResult_t r = api_.comm_init_rank_config(&comm_, world_, id_, rank_, &cfg);
            nonblocking_ = true;
            if (r != ncclInProgress) check(r, "ncclCommInitRankConfig");
            lock.unlock();
            wait_async("ncclCommInitRankConfig (every rank joining the communicator)");
        } else {
            check(api_.comm_init_rank(&comm_, world_, id_, rank_), "ncclCommInitRank");
        }
        std::fprintf(stderr, "[hqlora] rank %d: NCCL communicator of %d ranks ready (%s)\n", rank_, world_,
                     nonblocking_ ? "non-blocking" : "blocking");
    }

    void all_reduce_sum(float* data, size_t n, void* stream) override {
        std::unique_lock<std::mutex> lock(mu_);
        alive();
        use_stream(static_cast<cudaStream_t>(stream));
        const ncclResult_t r = api_.all_reduce(data, data, n, ncclFloat32, ncclSum, comm_, stream_);
        finish(r, "ncclAllReduce (gradients)", lock);
    }

    void broadcast(float* data, size_t n, int root, void* stream) override {
        std::unique_lock<std::mutex> lock(mu_);
        alive();
        use_stream(static_cast<cudaStream_t>(stream));
        const ncclResult_t r = api_.broadcast(data, data, n, ncclFloat32, root, comm_, stream_);
        finish(r, "ncclBroadcast", lock);
    }

    void start_all_reduce_sum(float* data, size_t n, void* stream) override {
        std::unique_lock<std::mutex> lock(mu_);
        alive();
        if (!comm_stream_) HQ_CUDA(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking));
        if (started_ == ready_.size()) {
            cudaEvent_t e = nullptr;
            HQ_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
            ready_.push_back(e);
        }
        cudaEvent_t ready = ready_[started_++];
        HQ_CUDA(cudaEventRecord(ready, static_cast<cudaStream_t>(stream)));
        use_stream(comm_stream_);
        HQ_CUDA(cudaStreamWaitEvent(comm_stream_, ready, 0));
        const ncclResult_t r = api_.all_reduce(data, data, n, ncclFloat32, ncclSum, comm_, comm_stream_);
        finish(r, "ncclAllReduce (gradient bucket)", lock);
    }

    void wait_all_reduces(void* stream) override {
        std::lock_guard<std::mutex> lock(mu_);
        if (started_ == 0) return;
        started_ = 0;
        alive();
        if (!joined_) HQ_CUDA(cudaEventCreateWithFlags(&joined_, cudaEventDisableTiming));
        HQ_CUDA(cudaEventRecord(joined_, comm_stream_));
        HQ_CUDA(cudaStreamWaitEvent(static_cast<cudaStream_t>(stream), joined_, 0));
    }

    // An exception leaves the step with sums in flight on buffers about to be freed: end them by aborting.
    void cancel_all_reduces() override {
        bool any = false;
        {
            std::lock_guard<std::mutex> lock(mu_);
            any = started_ > 0;
            started_ = 0;
        }
        if (any) abort();
    }

    void all_reduce_host(double* data, size_t n) override {
        std::unique_lock<std::mutex> lock(mu_);
        alive();
        if (!stream_) {
            HQ_CUDA(cudaStreamCreateWithFlags(&own_stream_, cudaStreamNonBlocking));
            stream_ = own_stream_;
        }
        if (n > pinned_n_) {
            if (pinned_) HQ_CUDA(cudaFreeHost(pinned_));
            pinned_ = nullptr;
            HQ_CUDA(cudaMallocHost(reinterpret_cast<void**>(&pinned_), n * sizeof(double)));
            pinned_n_ = n;
        }
        if (!done_) HQ_CUDA(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
        dev_.resize(n);
        std::memcpy(pinned_, data, n * sizeof(double));
        HQ_CUDA(cudaMemcpyAsync(dev_.data(), pinned_, n * sizeof(double), cudaMemcpyHostToDevice, stream_));
        const ncclResult_t r = api_.all_reduce(dev_.data(), dev_.data(), n, ncclFloat64, ncclSum, comm_, stream_);
        finish(r, "ncclAllReduce (loss and flags)", lock);
        lock.lock();
        HQ_CUDA(cudaMemcpyAsync(pinned_, dev_.data(), n * sizeof(double), cudaMemcpyDeviceToHost, stream_));
        HQ_CUDA(cudaEventRecord(done_, stream_));
        lock.unlock();
        wait_event();
        std::memcpy(data, pinned_, n * sizeof(double));
    }

    // From the watchdog thread: another rank failed. Aborting makes NCCL's kernels and calls return.
    void abort() override {
        std::lock_guard<std::mutex> lock(mu_);
        if (!comm_ || aborted_) return;
        aborted_ = true;
        api_.comm_abort(comm_);
        comm_ = nullptr;
    }

  private:
    static double seconds_since(Clock::time_point t) {
        return std::chrono::duration<double>(Clock::now() - t).count();
    }

    // Two ranks on one GPU: NCCL refuses (or hangs) without saying which; say it here, on every rank alike.
    void check_placement(Rendezvous& rv) {
        int dev = 0;
        HQ_CUDA(cudaGetDevice(&dev));
        char bus[64] = {0};
        HQ_CUDA(cudaDeviceGetPCIBusId(bus, sizeof bus, dev));
        char host[256] = {0};
        gethostname(host, sizeof host - 1);
        const std::vector<std::string> where = rv.all_gather(std::string(host) + " GPU " + bus);
        for (int a = 0; a < world_; ++a)
            for (int b = a + 1; b < world_; ++b)
                if (where[a] == where[b])
                    throw Error("E_DIST", HQ_MSG("ranks " << a << " and " << b << " would share " << where[a]
                                                 << ": NCCL needs one GPU per rank"),
                                {}, "start at most as many ranks per host as it has GPUs (hardware.gpus, --nproc, "
                                    "torchrun --nproc-per-node), and check CUDA_VISIBLE_DEVICES");
    }

    void check(ncclResult_t r, const char* call) {
        if (r == ncclSuccess) return;
        fail(r, call);
    }

    [[noreturn]] void fail(ncclResult_t r, const std::string& call) {
        dist_check_failure();   // another rank's failure explains this one better
        const char* last = api_.get_last_error ? api_.get_last_error(comm_) : nullptr;
        std::string hint = "set NCCL_DEBUG=WARN for NCCL's own account; check the GPUs with nvidia-smi";
        if (r == ncclRemoteError || r == ncclSystemError)
            hint = "a peer or the network failed: check that every rank runs and that the hosts reach each other "
                   "(NCCL_SOCKET_IFNAME names the interface); rerun with --resume";
        else if (r == ncclUnhandledCudaError)
            hint = "a CUDA call inside NCCL failed: check the GPU (nvidia-smi) and its memory";
        throw Error("E_DIST",
                    HQ_MSG("rank " << rank_ << ": " << call << " failed: " << api_.get_error_string(r) << " (" << int(r)
                                   << ")" << (last && *last ? std::string(": ") + last : std::string())),
                    {}, hint);
    }

    // A failure elsewhere, or an aborted communicator: the world's error.
    void alive() {
        dist_check_failure();
        if (aborted_ || !comm_)
            throw Error("E_DIST", HQ_MSG("rank " << rank_ << ": the NCCL communicator was aborted"), {},
                        "another rank failed; its error is in its log");
    }

    // Collectives of one communicator must be ordered alike on every rank: a new stream waits for the old one.
    void use_stream(cudaStream_t s) {
        if (stream_ && s != stream_) {
            if (!order_) HQ_CUDA(cudaEventCreateWithFlags(&order_, cudaEventDisableTiming));
            HQ_CUDA(cudaEventRecord(order_, stream_));
            HQ_CUDA(cudaStreamWaitEvent(s, order_, 0));
        }
        stream_ = s;
    }

    [[noreturn]] void timed_out(const std::string& what) {
        abort();
        throw Error("E_DIST", HQ_MSG("rank " << rank_ << ": " << what << " did not finish within distributed.timeout_s = "
                                     << timeout_s_ << " s"),
                    {}, "a rank is stuck or far slower than the others (its log says where); raise "
                        "distributed.timeout_s if that is expected (long evaluations or checkpoints of rank 0)");
    }

    // The end of an enqueued collective: its error, or (non-blocking, in progress) the poll until it ends, with the
    // lock released (wait_async takes it for each poll, so the watchdog's abort can come between two).
    void finish(ncclResult_t r, const char* what, std::unique_lock<std::mutex>& lock) {
        if (r != ncclInProgress) check(r, what);
        lock.unlock();
        if (r == ncclInProgress) wait_async(what);
    }

    // Polls a non-blocking call until it ends.
    void wait_async(const std::string& what) {
        const auto t0 = Clock::now();
        for (;;) {
            ncclResult_t st = ncclSuccess, r;
            {
                std::lock_guard<std::mutex> lock(mu_);
                alive();
                r = api_.comm_get_async_error(comm_, &st);
            }
            if (r != ncclSuccess) fail(r, "ncclCommGetAsyncError after " + what);
            if (st == ncclSuccess) return;
            if (st != ncclInProgress) fail(st, what);
            if (seconds_since(t0) > timeout_s_) timed_out(what);
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
    }

    // Polls the step's last event: every collective of the step has ended (or the world failed, or time ran out).
    void wait_event() {
        const auto t0 = Clock::now();
        for (;;) {
            cudaError_t e;
            ncclResult_t st = ncclSuccess;
            {
                std::lock_guard<std::mutex> lock(mu_);
                alive();
                e = cudaEventQuery(done_);
                if (e == cudaErrorNotReady && api_.comm_get_async_error(comm_, &st) == ncclSuccess &&
                    st != ncclSuccess && st != ncclInProgress) {
                    fail(st, "an NCCL collective of this step");
                }
            }
            if (e == cudaSuccess) return;
            if (e != cudaErrorNotReady) throw_cuda(e, "cudaEventQuery (the step's collectives)", __FILE__, __LINE__);
            if (seconds_since(t0) > timeout_s_) timed_out("the NCCL collectives of this step");
            std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
    }

    int rank_, world_;
    double timeout_s_;
    Api api_;
    int version_ = 0;
    ncclUniqueId id_{};
    std::mutex mu_;   // one NCCL call at a time: the main thread's, or the watchdog's abort
    ncclComm_t comm_ = nullptr;
    bool nonblocking_ = false, aborted_ = false;
    cudaStream_t stream_ = nullptr, own_stream_ = nullptr;
    cudaEvent_t done_ = nullptr, order_ = nullptr;
    cudaStream_t comm_stream_ = nullptr;   // overlap: the buckets' stream
    std::vector<cudaEvent_t> ready_;       // overlap: bucket k's layers are enqueued on the model's stream
    size_t started_ = 0;                   // buckets started since the last wait_all_reduces
    cudaEvent_t joined_ = nullptr;         // overlap: the buckets' end, waited for on the model's stream
    DeviceBuffer<double> dev_;
    double* pinned_ = nullptr;
    size_t pinned_n_ = 0;
};

}  // namespace

void select_device(int local_rank) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n <= 0) {
        cudaGetLastError();
        return;   // no GPU: load_model_on says so (or falls back to the CPU)
    }
    HQ_CUDA(cudaSetDevice(local_rank % n));
}

std::unique_ptr<Collective> make_nccl_collective(Rendezvous& rv, double timeout_s) {
    return std::make_unique<NcclCollective>(rv, timeout_s);
}

}  // namespace hq::cuda
