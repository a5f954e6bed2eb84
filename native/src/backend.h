// backend.h — choosing the compute backend of a run: hardware.device = "cpu" | "cuda" | "auto".
//
// The core library knows only the CPU backend. A device backend registers itself from the executable's composition
// root (main_train.cpp registers the CUDA backend when the build has it), so the core has no link-time dependency
// on CUDA and the node addon never loads it.
//   cpu  : the CPU backend.
//   cuda : the CUDA backend; E_CUDA when this build has none or no GPU/driver/cuBLASLt is usable (the error says
//          which, and how to switch).
//   auto : CUDA when it is built and usable, else the CPU backend, with a warning that says why.
// compute_dtype (quantization.compute_dtype): the CUDA backend computes in bfloat16, the CPU backend in float32.
// "float32" with device cuda is a config error; with auto it selects the CPU backend.
#pragma once
#include <memory>
#include <string>

#include "dist.h"
#include "model.h"

namespace hq {

struct DeviceBackend {
    std::string name;   // "cuda"
    // true when usable; else false with the reason in *why (no device, no driver, library missing, ...).
    bool (*available)(std::string* why) = nullptr;
    std::unique_ptr<Model> (*load)(const std::string& dir, const QuantSpec& quant, const AdapterSpec& adapter,
                                   uint64_t seed) = nullptr;
    // Data parallel (optional): select this local rank's GPU before load (LOCAL_RANK modulo the visible devices),
    // and the device collective (NCCL) over the rendezvous.
    void (*select_device)(int local_rank) = nullptr;
    std::unique_ptr<Collective> (*make_collective)(Rendezvous& rv, double timeout_s) = nullptr;
};

void register_device_backend(const DeviceBackend& b);
// The registered backend, or nullptr.
const DeviceBackend* device_backend();

struct LoadedModel {
    std::unique_ptr<Model> model;
    std::string backend;   // "cpu" | "cuda"
    std::string warning;   // non-empty when `auto` fell back to the CPU: why
};

// Loads the model on the backend `device` asks for. `config_file` names the run config in errors.
LoadedModel load_model_on(const std::string& device, const std::string& dir, const QuantSpec& quant,
                          const AdapterSpec& adapter, uint64_t seed, const std::string& config_file = {},
                          const std::string& compute_dtype = "auto");

}  // namespace hq
