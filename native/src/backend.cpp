// backend.cpp — see backend.h.
#include "backend.h"

#include "error.h"
#include "model_config.h"

namespace hq {

namespace {
DeviceBackend g_backend;
bool g_registered = false;
}  // namespace

void register_device_backend(const DeviceBackend& b) {
    g_backend = b;
    g_registered = true;
}

const DeviceBackend* device_backend() { return g_registered ? &g_backend : nullptr; }

LoadedModel load_model_on(const std::string& device, const std::string& dir, const QuantSpec& quant,
                          const AdapterSpec& adapter, uint64_t seed, const std::string& config_file,
                          const std::string& compute_dtype) {
    Where w;
    w.file = config_file;
    w.key = "hardware.device";
    LoadedModel r;
    if (compute_dtype == "float32" && device == "cuda") {
        Where wd = w;
        wd.key = "quantization.compute_dtype";
        throw Error("E_CONFIG", "quantization.compute_dtype is float32 but the CUDA backend computes in bfloat16", wd,
                    "set quantization.compute_dtype to auto or bfloat16, or hardware.device to cpu (float32)");
    }
    if ((device == "cuda" || device == "auto") && compute_dtype != "float32") {
        const DeviceBackend* b = device_backend();
        std::string why;
        bool unsupported = false;
        if (!b) {
            why = "this build of hqlora-train has no CUDA backend (it was built without the CUDA toolkit)";
        } else if (b->available(&why)) {
            // Families whose layers the CUDA backend lacks are refused (cuda) or trained on the CPU (auto), never
            // run with a silently different forward.
            const ModelConfig mc = load_model_config(dir);
            const std::string missing = mc.cuda_missing_features();
            if (missing.empty()) {
                r.model = b->load(dir, quant, adapter, seed);
                r.backend = b->name;
                return r;
            }
            unsupported = true;
            why = HQ_MSG("the CUDA backend does not implement " << missing << " of this " << mc.model_type
                                                                  << " model yet");
        }
        if (device == "cuda")
            throw Error("E_CUDA", HQ_MSG("hardware.device is \"cuda\" but " << why), w,
                        "set hardware.device to \"cpu\" (or \"auto\" to use a GPU only when one is usable)");
        r.warning = unsupported ? HQ_MSG(why << "; training on the CPU")
                                : HQ_MSG("no usable GPU (" << why << "); training on the CPU");
    } else if (device != "cpu" && device != "auto") {
        throw Error("E_CONFIG", HQ_MSG("hardware.device \"" << device << "\" is not one of cpu, cuda, auto"), w,
                    "set hardware.device to cpu, cuda or auto");
    }
    r.model = Model::load(dir, quant, adapter, seed);
    r.backend = "cpu";
    return r;
}

}  // namespace hq
