// data_parallel.h — what the training loop does differently on a world of several ranks (dist.h has the layers).
//
// Semantics (the ecosystem's: torch DDP / HF Trainer): micro_batch_size and gradient_accumulation_steps are per
// rank, so one optimizer step consumes world × accumulation micro-batches of the one global, deterministic stream
// (the existing shuffled or length-grouped order; tokens.h). Every rank walks the whole stream and keeps global
// micro-batches [rank × ga, (rank + 1) × ga) of each step; it also counts the target tokens of all of them, so the
// gradient scale 1 / (global target tokens) is known before the backward. Dropout masks continue the global
// sequence (the rank skips the rank × ga masks of the micro-batches before its own). After the backward the adapter
// gradients are summed over ranks (buckets of distributed.bucket_mb; with distributed.overlap each bucket's sum
// starts during the last micro-batch's backward, as soon as its layers are done) and the loss sum with them, so the loss, the
// gradient norm, the clipping and the AdamW update are those of the global batch, identical on every rank: a run on
// N ranks is a run on one rank with N × accumulation. The data cursor in a checkpoint is global, so a run resumes on
// any world size.
//
// ZeRO-1 (distributed.zero 1, CPU backend): the params are split into W consecutive runs of about equal size; rank
// r keeps the AdamW moments of its run only and updates only its params, then every rank's updated weights go to
// the others (Collective::broadcast from each owner), so each rank ends the step with the weights every rank would
// have computed: the same bits as without ZeRO (AdamW is elementwise). A checkpoint gathers the whole state first
// (rank 0 writes it as without ZeRO), so a run resumes on any world size, with or without ZeRO, and is re-sharded
// on load.
//
// Rank 0 alone writes the run folder (events.jsonl, checkpoints, adapters, exports); the other ranks print errors
// only. Stop (SIGINT/SIGTERM) and "save now" (SIGUSR1) requests of any rank are summed with the step, so all ranks
// stop after the same step and rank 0 writes the one checkpoint.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "dist.h"
#include "model.h"
#include "optimizer.h"

namespace hq {

struct DistributedConfig {
    std::string backend = "auto";   // auto (nccl for a device model, else cpu) | cpu | nccl
    double timeout_s = 600.0;       // rendezvous and collective timeout (NCCL's watchdog)
    double bucket_mb = 25.0;        // gradient all-reduce bucket size (0: one bucket per layer)
    bool overlap = true;            // start each bucket's sum while the backward runs on the layers below
    int zero = 0;                   // 1: ZeRO-1, the AdamW state sharded over ranks
};

class DataParallel {
  public:
    // Reads the launch environment (dist_env_from_environment) and, when a launcher set one, joins the rendezvous.
    // Without a launcher: a world of one, and every call below is a no-op.
    // `device` (hardware.device): unless "cpu", the device backend selects this local rank's GPU first.
    DataParallel(const DistributedConfig& cfg, const std::string& device);
    ~DataParallel();   // a normal return ends the rendezvous (finish); an exception leaves it to dist_report_failure

    bool active() const { return rv_ != nullptr; }
    int rank() const { return env_.rank; }
    int world() const { return env_.world; }
    int local_rank() const { return env_.local_rank; }
    bool root() const { return env_.rank == 0; }
    std::string backend() const { return coll_ ? coll_->name() : "none"; }
    const DistEnv& env() const { return env_; }

    // After the model is loaded: the collective for it (NCCL needs the device model, CPU the host one), and the
    // watchdog.
    void attach(Model& model, const std::string& config_file);
    // Before the backward of the step's last micro-batch (the one after which the gradients are final): with
    // distributed.overlap, installs the model's grads-ready hook, so each bucket's sum starts as the backward leaves
    // its layers (OverlappedBuckets). No-op when not active or without overlap.
    void arm_overlap(Model& model);
    // Sums the model's gradient buffer over ranks (overlapped: starts what is left, waits, removes the hook);
    // returns the bytes all-reduced (0 when not active).
    size_t reduce_gradients(Model& model);
    // The step ends by an exception: stops the sums arm_overlap started (before the model's buffers go) and removes
    // the hook. Harmless after reduce_gradients.
    void disarm(Model& model);
    // Buckets of the last reduce_gradients.
    int last_buckets() const { return last_buckets_; }

    // ZeRO-1: on when distributed.zero is 1 and the world has more than one rank.
    bool zero() const { return coll_ && cfg_.zero == 1 && world() > 1; }
    // Keeps only this rank's share of the optimizer state (after the optimizer exists and any checkpoint was
    // restored into it, and after each zero_gather_state). No-op without ZeRO.
    void zero_shard(AdamW& opt);
    // After AdamW::step on this rank's share: every rank's updated weights to all.
    void zero_gather_weights(Model& model);
    // Before a checkpoint: the whole optimizer state on every rank (for rank 0 to write); zero_shard after it.
    void zero_gather_state(AdamW& opt);
    // Sums v over ranks (host fp64).
    void reduce_host(std::vector<double>& v);

  private:
    size_t bucket_bytes() const;
    DistributedConfig cfg_;
    DistEnv env_;
    Rendezvous* rv_ = nullptr;   // owned by dist_report_failure's registry (lives until exit)
    std::unique_ptr<Collective> coll_;
    std::unique_ptr<OverlappedBuckets> overlap_;   // between arm_overlap and reduce_gradients
    int last_buckets_ = 0;
    std::vector<size_t> zero_first_;   // ZeRO-1: rank r updates params [zero_first_[r], zero_first_[r + 1])
    bool zero_contiguous_ = false;     // the params' weights are back to back (one broadcast per rank)
};

// When this process is a rank of a world: tell the others it failed with `message` (main's catch blocks call it
// before exiting). No-op otherwise.
void dist_report_failure(const std::string& message);

}  // namespace hq
