// dist.h — data-parallel training: the launch environment, the rendezvous, and the one collective interface.
//
// Launch (dist_env.cpp). hqlora-train is one rank of a world. Its place comes from the environment the usual
// launchers set, read in this order:
//   torchrun / torch.distributed.run : RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
//   Slurm (srun)                     : SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; the master is MASTER_ADDR when set,
//                                      else the first host of SLURM_JOB_NODELIST (SLURM_NODELIST)
//   neither                          : a world of one, no rendezvous (the single-process trainer of before)
// MASTER_PORT defaults to 29500 (torchrun's default) in both.
//
// Rendezvous (dist_rendezvous.cpp). Rank 0 listens on MASTER_PORT, every other rank connects to
// MASTER_ADDR:MASTER_PORT. Over these TCP connections rank 0 sends the backend's setup blob (the NCCL unique id, or
// the name of the CPU backend's shared-memory segment). The connections then stay open as the control channel that
// turns one rank's death into everyone's stop:
//   - a rank that fails sends its error to rank 0 before it exits;
//   - a rank that dies without a word (SIGKILL, the OOM killer) closes its socket: the kernel does that for it;
//   - rank 0's watchdog thread sees either, and tells every other rank "rank k failed: <why>"; the other ranks'
//     watchdogs see rank 0's own death as the end of their socket.
// Every rank then has the failure in dist_abort_state(): a collective that waits polls it and throws E_DIST naming
// the failing rank and its error; a backend whose wait cannot be polled (NCCL) is aborted from the watchdog
// (Collective::abort). A rank that does not reach its next collective within `grace` seconds of the failure (a long
// computation) is ended by its watchdog with the same message on stderr, so no rank outlives a failed world. A
// collective that waits longer than distributed.timeout_s fails with E_DIST naming the ranks that did not arrive.
//
// Collectives (Collective). Every rank computes on its own shard of each global batch; the trainer sums the
// adapter gradients and the step's loss over ranks with all_reduce_sum (and, with ZeRO-1, sends each rank's updated
// shard of the weights to the others with broadcast). Backends:
//   cpu  (dist_shm.cpp)        : processes on one host over a POSIX shared-memory segment. The sum runs in rank
//                                order 0, 1, …, W-1 on every rank, so every rank gets the same bits, and a world of
//                                W ranks with one micro-batch each sums exactly as one rank accumulating W
//                                micro-batches does (((g0 + g1) + g2) + …).
//   nccl (native/cuda/nccl.cpp): NCCL, loaded at run time (dlopen libnccl.so.2), on device buffers.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace hq {

struct DistEnv {
    int rank = 0, world = 1, local_rank = 0;
    std::string master_addr = "127.0.0.1";
    int master_port = 29500;
    std::string source = "single";   // "single" | "torchrun" | "slurm"
    bool distributed() const { return source != "single"; }
};

// The environment of this process (getenv). Throws E_DIST naming the variable when a value is malformed or out of
// range (RANK >= WORLD_SIZE, a port outside 1..65535, ...).
DistEnv dist_env_from_environment();
// The same from any lookup (tests).
DistEnv dist_env_from(const std::function<const char*(const char*)>& get);
// First host of a Slurm node list: "gpu[03-07,12],cpu1" -> "gpu03", "a,b" -> "a", "n[1-2]" -> "n1".
std::string slurm_first_host(const std::string& nodelist);

// ---- failure state shared by the watchdog and the collectives -------------------------------------------------
struct DistFailure {
    int rank = -1;         // the rank that failed first (-1: none yet)
    std::string message;   // what it said, or how it was seen to die
};
// Records the first failure (later ones are ignored) and returns whether this call recorded it.
bool dist_set_failure(int rank, const std::string& message);
bool dist_failed();
DistFailure dist_failure();
// Throws E_DIST for the recorded failure, if any.
void dist_check_failure();

// ---- the rendezvous and control channel ------------------------------------------------------------------------
class Rendezvous {
  public:
    // Rank 0 binds MASTER_PORT (all interfaces) and accepts world-1 connections; the others connect, retrying
    // until `timeout_s`. Throws E_DIST with the address, the ranks missing and what to check.
    Rendezvous(const DistEnv& env, double timeout_s);
    ~Rendezvous();
    Rendezvous(const Rendezvous&) = delete;
    Rendezvous& operator=(const Rendezvous&) = delete;

    const DistEnv& env() const { return env_; }
    // Rank 0's `blob` to every rank (the others pass anything). Before start_watchdog only.
    std::string broadcast(const std::string& blob);
    // Every rank's `item`, in rank order. Before start_watchdog only.
    std::vector<std::string> all_gather(const std::string& item);

    // Starts the control-channel watchdog (see the top of this file). `on_failure` runs on the watchdog thread once,
    // when a failure is first seen (NCCL aborts its communicator there). `grace_s`: how long the main thread has to
    // notice before the watchdog ends the process (exit code 1).
    void start_watchdog(std::function<void()> on_failure, double grace_s);
    // This rank failed with `message`: tell rank 0 (rank 0 tells the others). Safe to call more than once.
    void report_failure(const std::string& message);
    // A normal end: stops the watchdog, says goodbye; ranks other than 0 then wait until rank 0 has finished too
    // (its connection closes), so a launcher sees every rank end after the run's last file is written.
    void finish();

  private:
    void watch();
    void send_msg(int fd, char type, const std::string& payload);
    DistEnv env_;
    int listen_fd_ = -1;
    std::vector<int> fds_;           // rank 0: fds_[k] = rank k's socket (fds_[0] = -1); others: fds_[0] = rank 0
    std::vector<bool> said_bye_;
    std::thread watchdog_;
    std::atomic<bool> stop_{false};
    std::function<void()> on_failure_;
    double grace_s_ = 10.0;
    std::mutex send_mu_;
};

// ---- the collective interface ----------------------------------------------------------------------------------
class Collective {
  public:
    virtual ~Collective() = default;
    virtual std::string name() const = 0;   // "cpu" | "nccl"
    virtual int rank() const = 0;
    virtual int world() const = 0;
    // true: all_reduce_sum takes device pointers (ordered on `stream`); false: host pointers.
    virtual bool on_device() const = 0;
    // In place: data[i] = Σ_ranks data[i] (fp32), identical on every rank. `stream` is the cudaStream_t the data is
    // produced on (device backends; ignored by the CPU backend). Returns when the result may be used on `stream`.
    virtual void all_reduce_sum(float* data, size_t n, void* stream) = 0;
    // In place: data[0, n) of rank `root` to every rank (ZeRO-1: each rank's updated shard of the weights, and of
    // the optimizer state for a checkpoint). Device pointers on `stream` for device backends, as all_reduce_sum.
    virtual void broadcast(float* data, size_t n, int root, void* stream) = 0;
    // In place, host memory, fp64: the step's loss sums, flags, per-rank memory (a few numbers per step).
    virtual void all_reduce_host(double* data, size_t n) = 0;

    // Overlapped gradient buckets (distributed.overlap). start_all_reduce_sum starts all_reduce_sum of data[0, n)
    // and returns at once: the CPU backend sums on a communication thread, NCCL on a stream of its own once the work
    // queued on `stream` so far (the backward of the bucket's layers) is done. Sums run in the order started, which
    // must be the same on every rank. wait_all_reduces: every started sum has ended (CPU), or is ordered before what
    // is queued on `stream` next (NCCL); throws the first failure of a started sum. cancel_all_reduces: an exception
    // is leaving buffers whose sums were started: stop them before the buffers go (the collective is unusable then).
    // The base runs the sum at once.
    virtual void start_all_reduce_sum(float* data, size_t n, void* stream) { all_reduce_sum(data, n, stream); }
    virtual void wait_all_reduces(void* stream) {}
    virtual void cancel_all_reduces() {}
    // From the watchdog thread when another rank failed: make a blocked collective return (NCCL: ncclCommAbort).
    virtual void abort() {}
    // Once the watchdog runs (the rendezvous carries no more messages): connect (NCCL: the communicator's init,
    // which waits for every rank, so a rank that dies meanwhile must be seen).
    virtual void start() {}
};

// The CPU backend over shared memory (all ranks on one host; E_DIST otherwise). `timeout_s`: a collective that
// waits longer fails naming the ranks that did not arrive.
std::unique_ptr<Collective> make_cpu_collective(Rendezvous& rv, double timeout_s);

// Gradient buckets: `n` floats at `data` summed over ranks in buckets of at most `bucket_bytes` (the last one
// shorter; 0: one bucket). Returns the bytes all-reduced.
size_t all_reduce_buckets(Collective& c, float* data, size_t n, size_t bucket_bytes, void* stream);

// The overlapped form (distributed.overlap): a model's grads-ready hook (Model::set_grads_ready_hook) feeds it the
// layers' gradient ranges as the backward finishes them, the last layer first; a bucket's sum starts as soon as its
// layers reach `bucket_bytes` (0: every layer is a bucket). finish() starts the rest of the buffer (everything
// below the last range started, so a model that never calls the hook gets one bucket at the end) and waits.
// On the CPU backend the sums are bit for bit those of all_reduce_buckets: each element is summed in rank order
// whatever the bucket.
class OverlappedBuckets {
  public:
    OverlappedBuckets(Collective& c, float* data, size_t n, size_t bucket_bytes, void* stream);
    // A destructor before finish() (an exception) cancels the started sums.
    ~OverlappedBuckets();
    void layer_ready(size_t offset, size_t n);
    // Returns the bytes all-reduced.
    size_t finish();
    int buckets() const { return buckets_; }

  private:
    void start(size_t lo, size_t hi);
    Collective& c_;
    float* data_;
    size_t n_, bucket_floats_;
    void* stream_;
    size_t pending_lo_, pending_hi_;   // [lo, hi): final, not yet started
    int buckets_ = 0;
    bool finished_ = false;
};

}  // namespace hq
