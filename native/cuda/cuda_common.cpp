// cuda_common.cpp — CUDA error reporting and device discovery.
#include "cuda_common.h"

#include <string>

namespace hq::cuda {

void throw_cuda(cudaError_t e, const char* what, const char* file, int line) {
    std::string hint = "check that the NVIDIA driver works (nvidia-smi) and that no other process holds the GPU's memory";
    if (e == cudaErrorMemoryAllocation)
        hint = "the GPU ran out of memory: lower training.micro_batch_size or data.source_max_len/target_max_len, or "
               "turn on training.gradient_checkpointing";
    else if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver)
        hint = "no usable NVIDIA GPU/driver: set hardware.device to cpu (or auto to fall back automatically)";
    throw Error("E_CUDA",
                HQ_MSG("CUDA call " << what << " failed: " << cudaGetErrorName(e) << " (" << cudaGetErrorString(e)
                                    << ") at " << file << ":" << line),
                Where{}, hint);
}

bool device_available(std::string* why) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (why) *why = HQ_MSG("no CUDA device: " << cudaGetErrorName(e) << " (" << cudaGetErrorString(e) << ")");
        cudaGetLastError();   // clear the sticky-free error state of the failed query
        return false;
    }
    if (n == 0) {
        if (why) *why = "no CUDA device found";
        return false;
    }
    return true;
}

}  // namespace hq::cuda
