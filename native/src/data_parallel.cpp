// data_parallel.cpp — the training loop's side of data parallelism (data_parallel.h).
#include "data_parallel.h"

#include <cstdio>
#include <exception>

#include "backend.h"
#include "error.h"

namespace hq {

namespace {

// The live rendezvous, for dist_report_failure from main's catch blocks (the trainer's stack is gone by then). It
// lives until exit: its sockets must stay open until the failure has been sent.
std::unique_ptr<Rendezvous>& registry() {
    static std::unique_ptr<Rendezvous> rv;
    return rv;
}

}  // namespace

DataParallel::DataParallel(const DistributedConfig& cfg, const std::string& device)
    : cfg_(cfg), env_(dist_env_from_environment()) {
    if (!env_.distributed()) return;
    if (device != "cpu" && device_backend() && device_backend()->select_device)
        device_backend()->select_device(env_.local_rank);
    registry() = std::make_unique<Rendezvous>(env_, cfg_.timeout_s);
    rv_ = registry().get();
    std::fprintf(stderr, "[hqlora] rank %d of %d (local rank %d, %s): rendezvous at %s:%d done\n", env_.rank,
                 env_.world, env_.local_rank, env_.source.c_str(), env_.master_addr.c_str(), env_.master_port);
}

DataParallel::~DataParallel() {
    if (!rv_ || std::uncaught_exceptions() > 0) return;
    try {
        rv_->finish();
    } catch (...) {
    }
    coll_.reset();
}

void DataParallel::attach(Model& model, const std::string& config_file) {
    if (!rv_) return;
    std::string b = cfg_.backend;
    if (b == "auto") b = model.device_resident() ? "nccl" : "cpu";
    if (b == "nccl") {
        if (!model.device_resident())
            throw Error("E_CONFIG", "distributed.backend nccl needs the CUDA backend, but the model is on the CPU",
                        Where{config_file, "", "distributed.backend", -1, -1},
                        "set hardware.device: cuda, or distributed.backend: cpu");
        const DeviceBackend* d = device_backend();
        if (!d || !d->make_collective)
            throw Error("E_DIST", "this trainer has no NCCL backend", {}, "use a build with CUDA");
        coll_ = d->make_collective(*rv_, cfg_.timeout_s);
    } else {
        if (model.device_resident())
            throw Error("E_CONFIG", "distributed.backend cpu sums host buffers, but the model is on the GPU",
                        Where{config_file, "", "distributed.backend", -1, -1},
                        "use distributed.backend: nccl (or auto) with hardware.device cuda");
        coll_ = make_cpu_collective(*rv_, cfg_.timeout_s);
    }
    if (cfg_.zero == 1 && model.device_resident())
        throw Error("E_CONFIG", "distributed.zero 1 shards the optimizer of the CPU backend; the CUDA backend keeps "
                                "the AdamW state of the adapters whole on every GPU (2 x the adapter's size)",
                    Where{config_file, "", "distributed.zero", -1, -1},
                    "set distributed.zero: 0 (the default) on GPUs, or train on the CPU (hardware.device: cpu)");
    Collective* c = coll_.get();
    rv_->start_watchdog([c] { c->abort(); }, 10.0);
    coll_->start();
    std::fprintf(stderr, "[hqlora] rank %d: %s collectives ready\n", env_.rank, coll_->name().c_str());
}

void DataParallel::arm_overlap(Model& model) {
    if (!coll_ || !cfg_.overlap) return;   // a launched world of one too: its sums are copies, the path is the same
    size_t n = 0;
    void* stream = nullptr;
    float* g = model.grad_buffer(&n, &stream);
    overlap_ = std::make_unique<OverlappedBuckets>(*coll_, g, n, bucket_bytes(), stream);
    OverlappedBuckets* ob = overlap_.get();
    model.set_grads_ready_hook([ob](int, size_t offset, size_t count) { ob->layer_ready(offset, count); });
}

size_t DataParallel::reduce_gradients(Model& model) {
    if (!coll_) return 0;
    if (overlap_) {
        model.set_grads_ready_hook(nullptr);
        const size_t bytes = overlap_->finish();
        last_buckets_ = overlap_->buckets();
        overlap_.reset();
        return bytes;
    }
    size_t n = 0;
    void* stream = nullptr;
    float* g = model.grad_buffer(&n, &stream);
    const size_t per = bucket_bytes() / sizeof(float);
    last_buckets_ = per == 0 ? 1 : static_cast<int>((n + per - 1) / per);
    return all_reduce_buckets(*coll_, g, n, bucket_bytes(), stream);
}

void DataParallel::disarm(Model& model) {
    if (!overlap_) return;
    model.set_grads_ready_hook(nullptr);
    overlap_.reset();   // cancels the started sums
}

void DataParallel::zero_shard(AdamW& opt) {
    if (!zero()) return;
    std::vector<Param>& ps = opt.params();
    if (zero_first_.empty()) {   // W runs of params: rank r's starts at the first param whose middle is past r/W
        size_t total = 0;
        for (const Param& p : ps) total += p.numel;
        zero_first_.assign(static_cast<size_t>(world()) + 1, ps.size());
        size_t i = 0, at = 0;
        for (int r = 0; r < world(); ++r) {
            const double from = static_cast<double>(total) * r / world();
            while (i < ps.size() && static_cast<double>(at) + 0.5 * static_cast<double>(ps[i].numel) < from)
                at += ps[i++].numel;
            zero_first_[static_cast<size_t>(r)] = i;
        }
        zero_contiguous_ = true;
        for (size_t k = 1; k < ps.size(); ++k) zero_contiguous_ &= ps[k].w == ps[k - 1].w + ps[k - 1].numel;
        size_t mine = 0;
        for (size_t k = zero_first_[rank()]; k < zero_first_[rank() + 1]; ++k) mine += ps[k].numel;
        std::fprintf(stderr, "[hqlora] rank %d: ZeRO-1: AdamW state of params %zu..%zu (%zu of %zu floats)\n", rank(),
                     zero_first_[rank()], zero_first_[rank() + 1], mine, total);
    }
    opt.shard(zero_first_[rank()], zero_first_[rank() + 1]);
}

void DataParallel::zero_gather_weights(Model& model) {
    if (!zero()) return;
    std::vector<Param>& ps = model.params();
    for (int r = 0; r < world(); ++r) {
        const size_t a = zero_first_[r], b = zero_first_[r + 1];
        if (a == b) continue;
        if (zero_contiguous_) {
            coll_->broadcast(ps[a].w, static_cast<size_t>(ps[b - 1].w + ps[b - 1].numel - ps[a].w), r, nullptr);
        } else {
            for (size_t k = a; k < b; ++k) coll_->broadcast(ps[k].w, ps[k].numel, r, nullptr);
        }
    }
}

void DataParallel::zero_gather_state(AdamW& opt) {
    if (!zero()) return;
    opt.unshard();
    for (int r = 0; r < world(); ++r)
        for (size_t k = zero_first_[r]; k < zero_first_[r + 1]; ++k) {
            coll_->broadcast(opt.m[k].data(), opt.m[k].size(), r, nullptr);
            coll_->broadcast(opt.v[k].data(), opt.v[k].size(), r, nullptr);
        }
}

size_t DataParallel::bucket_bytes() const { return static_cast<size_t>(cfg_.bucket_mb * 1024 * 1024); }

void DataParallel::reduce_host(std::vector<double>& v) {
    if (coll_) coll_->all_reduce_host(v.data(), v.size());
}

void dist_report_failure(const std::string& message) {
    if (registry()) registry()->report_failure(message);
}

}  // namespace hq
