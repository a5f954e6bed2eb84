// cuda_common.h — CUDA runtime checks that throw hq::Error, and an owning device buffer.
//
// Every CUDA runtime call of the backend goes through HQ_CUDA(...): a failure throws hq::Error("E_CUDA", ...)
// naming the call, the CUDA error string and the source position, with a hint. Kernel launches are followed by
// HQ_CUDA_LAUNCH("name") (cudaGetLastError). Nothing here synchronises the device.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "error.h"

namespace hq::cuda {

using bf16 = __nv_bfloat16;

[[noreturn]] void throw_cuda(cudaError_t e, const char* what, const char* file, int line);

#define HQ_CUDA(call)                                                                   \
    do {                                                                                \
        cudaError_t hq_e_ = (call);                                                     \
        if (hq_e_ != cudaSuccess) ::hq::cuda::throw_cuda(hq_e_, #call, __FILE__, __LINE__); \
    } while (0)
#define HQ_CUDA_LAUNCH(name)                                                            \
    do {                                                                                \
        cudaError_t hq_e_ = cudaGetLastError();                                         \
        if (hq_e_ != cudaSuccess) ::hq::cuda::throw_cuda(hq_e_, name, __FILE__, __LINE__); \
    } while (0)

// Owning device allocation of n elements of T (cudaMalloc / cudaFree). Movable, not copyable.
template <typename T>
class DeviceBuffer {
  public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(size_t n) { resize(n); }
    ~DeviceBuffer() { release(); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
        if (this != &o) {
            release();
            p_ = std::exchange(o.p_, nullptr);
            n_ = std::exchange(o.n_, 0);
        }
        return *this;
    }
    // Reallocates (contents lost) when n exceeds the capacity; never shrinks.
    void resize(size_t n) {
        if (n <= n_) return;
        release();
        void* p = nullptr;
        HQ_CUDA(cudaMalloc(&p, n * sizeof(T) > 0 ? n * sizeof(T) : 1));
        p_ = static_cast<T*>(p);
        n_ = n;
    }
    void release() {
        if (p_) cudaFree(p_);
        p_ = nullptr;
        n_ = 0;
    }
    T* data() { return p_; }
    const T* data() const { return p_; }
    size_t size() const { return n_; }
    size_t bytes() const { return n_ * sizeof(T); }

  private:
    T* p_ = nullptr;
    size_t n_ = 0;
};

// true when a CUDA device is usable; otherwise false and `why` says what is missing (no driver, no device, ...).
bool device_available(std::string* why);

}  // namespace hq::cuda
