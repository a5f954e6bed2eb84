// dist_shm.cpp — the CPU collective backend: ranks on one host sum through a POSIX shared-memory segment (dist.h).
//
// Segment: a header (barrier generation and count, each rank's last barrier) and one slot of kSlotBytes per rank.
// broadcast, per chunk: the root copies it into its slot; barrier; the others copy it out; barrier.
// all_reduce of n values, per chunk of at most one slot: every rank copies its chunk into its slot; barrier; every
// rank sums the slots in rank order 0..W-1 into its own buffer (so all ranks hold the same bits, and the order is
// the one a single rank accumulating micro-batches 0..W-1 uses); barrier (the slots may be written again). Waits are
// futexes on the generation word with a 100 ms timeout, so a waiting rank sees a failure elsewhere (dist_failed)
// within 0.1 s, and after timeout_s it names the ranks that never arrived.
//
// Overlap (start_all_reduce_sum): the started buckets are summed one after another, in the order started, by one
// communication thread of the collective, while the main thread goes on with the backward; wait_all_reduces waits
// until the queue is empty. The main thread's own collectives wait for the queue first, so the segment is used by
// one thread at a time and every rank walks the same sequence of chunks.
//
// Rank 0 creates the segment under a random name, sends the name through the rendezvous, and unlinks it as soon as
// every rank has mapped it: nothing is left in /dev/shm, whatever kills the ranks later.
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <deque>
#include <exception>
#include <cstring>
#include <ctime>
#include <mutex>
#include <random>
#include <thread>

#include "dist.h"
#include "error.h"

namespace hq {

namespace {

constexpr size_t kSlotBytes = size_t(1) << 20;   // 1 MiB per rank: 256 Ki floats per chunk
constexpr int kMaxWorld = 256;

struct alignas(64) ShmHeader {
    std::atomic<uint32_t> gen;
    std::atomic<uint32_t> count;
    std::atomic<uint32_t> arrived[kMaxWorld];   // the generation each rank last waited for
};
static_assert(std::atomic<uint32_t>::is_always_lock_free, "futex needs a plain 32-bit word");

void futex_wait(std::atomic<uint32_t>* w, uint32_t expected, int ms) {
    timespec ts{ms / 1000, (ms % 1000) * 1000000L};
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(w), FUTEX_WAIT, expected, &ts, nullptr, 0);
}
void futex_wake_all(std::atomic<uint32_t>* w) {
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(w), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

class ShmCollective final : public Collective {
  public:
    ShmCollective(Rendezvous& rv, double timeout_s) : rank_(rv.env().rank), world_(rv.env().world), timeout_s_(timeout_s) {
        if (world_ > kMaxWorld)
            throw Error("E_DIST", HQ_MSG("the CPU backend takes at most " << kMaxWorld << " ranks, not " << world_), {},
                        "use fewer ranks");
        char host[256] = {0};
        gethostname(host, sizeof host - 1);
        const std::vector<std::string> hosts = rv.all_gather(host);
        for (int k = 1; k < world_; ++k)
            if (hosts[k] != hosts[0])
                throw Error("E_DIST", HQ_MSG("the CPU collective backend needs every rank on one host; rank 0 is on "
                                             << hosts[0] << ", rank " << k << " on " << hosts[k]),
                            {}, "across nodes, train on GPUs (hardware.device: cuda, NCCL)");
        bytes_ = sizeof(ShmHeader) + kSlotBytes * static_cast<size_t>(world_);
        std::string name;
        int fd = -1;
        if (rank_ == 0) {
            std::random_device rd;
            name = HQ_MSG("/hqlora-" << getpid() << "-" << std::hex << rd() << rd());
            fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
            if (fd < 0 || ftruncate(fd, static_cast<off_t>(bytes_)) != 0)
                throw Error("E_DIST", HQ_MSG("cannot create the shared-memory segment " << name << " ("
                                             << bytes_ << " bytes): " << std::strerror(errno)),
                            {}, "check that /dev/shm is mounted and has room");
        }
        name = rv.broadcast(name);
        if (rank_ != 0) {
            fd = shm_open(name.c_str(), O_RDWR, 0600);
            if (fd < 0)
                throw Error("E_DIST", HQ_MSG("cannot open rank 0's shared-memory segment " << name << ": "
                                             << std::strerror(errno)),
                            {}, "all ranks must run on one host as the same user");
        }
        void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ::close(fd);
        if (p == MAP_FAILED)
            throw Error("E_DIST", HQ_MSG("mmap of " << name << " failed: " << std::strerror(errno)), {}, "");
        base_ = static_cast<char*>(p);
        hdr_ = reinterpret_cast<ShmHeader*>(base_);   // zero-filled by ftruncate: gen = count = 0
        rv.all_gather("mapped");
        if (rank_ == 0) shm_unlink(name.c_str());
    }
    ~ShmCollective() override {
        if (comm_.joinable()) {
            {
                std::lock_guard<std::mutex> lock(q_mu_);
                quit_ = true;
                queue_.clear();
            }
            cancel_.store(true);
            q_cv_.notify_all();
            comm_.join();
        }
        if (base_) munmap(base_, bytes_);
    }

    std::string name() const override { return "cpu"; }
    int rank() const override { return rank_; }
    int world() const override { return world_; }
    bool on_device() const override { return false; }

    void all_reduce_sum(float* data, size_t n, void* stream) override {
        wait_all_reduces(stream);
        reduce(data, n);
    }
    void all_reduce_host(double* data, size_t n) override {
        wait_all_reduces(nullptr);
        reduce(data, n);
    }

    void broadcast(float* data, size_t n, int root, void* stream) override {
        HQ_ASSERT(root >= 0 && root < world_);
        wait_all_reduces(stream);
        dist_check_failure();
        const size_t per = kSlotBytes / sizeof(float);
        for (size_t off = 0; off < n; off += per) {
            const size_t c = std::min(per, n - off);
            if (rank_ == root) std::memcpy(slot<float>(root), data + off, c * sizeof(float));
            barrier();
            if (rank_ != root) std::memcpy(data + off, slot<float>(root), c * sizeof(float));
            barrier();
        }
    }

    void start_all_reduce_sum(float* data, size_t n, void*) override {
        std::lock_guard<std::mutex> lock(q_mu_);
        if (comm_error_) return;   // wait_all_reduces throws it
        if (!comm_.joinable()) comm_ = std::thread([this] { comm_loop(); });
        queue_.push_back({data, n});
        q_cv_.notify_all();
    }
    void wait_all_reduces(void*) override {
        std::unique_lock<std::mutex> lock(q_mu_);
        q_cv_.wait(lock, [&] { return queue_.empty() && !busy_; });
        if (comm_error_) std::rethrow_exception(comm_error_);
    }
    void cancel_all_reduces() override {
        std::unique_lock<std::mutex> lock(q_mu_);
        queue_.clear();
        cancel_.store(true);   // a sum waiting in a barrier throws within 0.1 s
        q_cv_.wait(lock, [&] { return !busy_; });
        if (!comm_error_)
            comm_error_ = std::make_exception_ptr(Error("E_DIST", HQ_MSG("rank " << rank_ << ": gradient sums cancelled"),
                                                        {}, "an error on this rank stopped the step; see it above"));
    }

  private:
    struct Job {
        float* data;
        size_t n;
    };
    // The communication thread: the started buckets in order; the first failure stops it (the rest are dropped).
    void comm_loop() {
        std::unique_lock<std::mutex> lock(q_mu_);
        for (;;) {
            q_cv_.wait(lock, [&] { return quit_ || !queue_.empty(); });
            if (quit_) return;
            const Job job = queue_.front();
            queue_.pop_front();
            busy_ = true;
            lock.unlock();
            std::exception_ptr err;
            try {
                reduce(job.data, job.n);
            } catch (...) {
                err = std::current_exception();
            }
            lock.lock();
            busy_ = false;
            if (err && !comm_error_) comm_error_ = err;
            if (comm_error_) queue_.clear();
            q_cv_.notify_all();
        }
    }

    template <class T>
    T* slot(int r) { return reinterpret_cast<T*>(base_ + sizeof(ShmHeader) + kSlotBytes * static_cast<size_t>(r)); }

    template <class T>
    void reduce(T* data, size_t n) {
        dist_check_failure();
        const size_t per = kSlotBytes / sizeof(T);
        for (size_t off = 0; off < n; off += per) {
            const size_t c = std::min(per, n - off);
            std::memcpy(slot<T>(rank_), data + off, c * sizeof(T));
            barrier();
            T* out = data + off;
            std::memcpy(out, slot<T>(0), c * sizeof(T));
            for (int r = 1; r < world_; ++r) {
                const T* s = slot<T>(r);
                for (size_t i = 0; i < c; ++i) out[i] += s[i];
            }
            barrier();
        }
    }

    void barrier() {
        const uint32_t g = hdr_->gen.load();
        hdr_->arrived[rank_].store(g + 1);
        if (hdr_->count.fetch_add(1) + 1 == static_cast<uint32_t>(world_)) {
            hdr_->count.store(0);
            hdr_->gen.store(g + 1);
            futex_wake_all(&hdr_->gen);
            return;
        }
        const auto t0 = std::chrono::steady_clock::now();
        while (hdr_->gen.load() == g) {
            futex_wait(&hdr_->gen, g, 100);
            dist_check_failure();
            if (cancel_.load())
                throw Error("E_DIST", HQ_MSG("rank " << rank_ << ": gradient sums cancelled"), {},
                            "an error on this rank stopped the step; see it above");
            const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            if (waited > timeout_s_ && hdr_->gen.load() == g) {
                std::string missing;
                for (int r = 0; r < world_; ++r)
                    if (hdr_->arrived[r].load() != g + 1) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
                throw Error("E_DIST", HQ_MSG("rank " << rank_ << ": a collective timed out after " << timeout_s_
                                             << " s; ranks " << missing << " did not arrive"),
                            {}, "a rank is stuck or far slower than the others; raise distributed.timeout_s if that "
                                "is expected (long evals or checkpoints of rank 0)");
            }
        }
    }

    int rank_, world_;
    double timeout_s_;
    size_t bytes_ = 0;
    char* base_ = nullptr;
    ShmHeader* hdr_ = nullptr;
    // overlap: the communication thread and its queue (q_mu_ guards queue_, busy_, quit_, comm_error_)
    std::thread comm_;
    std::mutex q_mu_;
    std::condition_variable q_cv_;
    std::deque<Job> queue_;
    bool busy_ = false, quit_ = false;
    std::atomic<bool> cancel_{false};
    std::exception_ptr comm_error_;
};

}  // namespace

std::unique_ptr<Collective> make_cpu_collective(Rendezvous& rv, double timeout_s) {
    return std::make_unique<ShmCollective>(rv, timeout_s);
}

}  // namespace hq
