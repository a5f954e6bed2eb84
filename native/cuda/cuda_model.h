// cuda_model.h — the CUDA backend of the decoder (model.h's Model on one GPU).
//
// The model is loaded and quantized by the CPU backend (the same NF4 + double-quant bytes, the same adapter init),
// then uploaded: NF4 storage, norms and embeddings (bf16) and the adapters (fp32 master weights with a bf16 shadow
// for the GEMMs, fp32 gradients and AdamW moments). Compute is bf16 GEMMs (cuBLASLt, fp32 accumulation) with fp32
// residual stream, norms statistics, softmax, loss and optimizer; the NF4 weight of a projection is dequantized
// into one reused bf16 buffer right before its GEMMs (its cost is spread over all B·T tokens of the micro-batch).
// Activations, checkpointing, dropout masks and the loss chunking follow the CPU backend (model.cpp) step by step.
#pragma once
#include "backend.h"

namespace hq::cuda {

// The backend to register with hq::register_device_backend (main_train.cpp).
DeviceBackend cuda_backend();

// Data parallel (nccl.cpp): this local rank's GPU (LOCAL_RANK modulo the visible devices), and the NCCL collective.
void select_device(int local_rank);
std::unique_ptr<Collective> make_nccl_collective(Rendezvous& rv, double timeout_s);

}  // namespace hq::cuda
