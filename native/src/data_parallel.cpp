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
    Collective* c = coll_.get();
    rv_->start_watchdog([c] { c->abort(); }, 10.0);
    coll_->start();
    std::fprintf(stderr, "[hqlora] rank %d: %s collectives ready\n", env_.rank, coll_->name().c_str());
}

void DataParallel::arm_overlap(Model& model) {
    if (!coll_ || !cfg_.overlap || world() == 1) return;
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

size_t DataParallel::bucket_bytes() const { return static_cast<size_t>(cfg_.bucket_mb * 1024 * 1024); }

void DataParallel::reduce_host(std::vector<double>& v) {
    if (coll_) coll_->all_reduce_host(v.data(), v.size());
}

void dist_report_failure(const std::string& message) {
    if (registry()) registry()->report_failure(message);
}

}  // namespace hq
