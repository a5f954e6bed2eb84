// nccl_api.h — the part of the NCCL C API that nccl.cpp uses, declared here because the toolkits we build with ship
// no nccl.h. The library is loaded at run time (dlopen "libnccl.so.2"), so hqlora-train does not link NCCL and runs
// without it wherever data parallel on GPUs is not asked for. Only types, enum values and signatures are needed;
// they are facts of NVIDIA's documented C ABI (NCCL user guide, "Types" and "Communicator Creation and Management"):
//
//   ncclResult_t    ncclSuccess 0, ncclUnhandledCudaError 1, ncclSystemError 2, ncclInternalError 3,
//                   ncclInvalidArgument 4, ncclInvalidUsage 5, ncclRemoteError 6 (2.12+), ncclInProgress 7 (2.14+)
//   ncclDataType_t  ncclInt8 0, ncclUint8 1, ncclInt32 2, ncclUint32 3, ncclInt64 4, ncclUint64 5, ncclFloat16 6,
//                   ncclFloat32 7, ncclFloat64 8, ncclBfloat16 9
//   ncclRedOp_t     ncclSum 0
//   ncclUniqueId    { char internal[NCCL_UNIQUE_ID_BYTES = 128]; }, passed by value to ncclCommInitRank*
//   ncclConfig_t    { size_t size; unsigned magic (0xcafebeef); unsigned version; int blocking; ... }: the 2.14
//                   layout. Later versions append fields and read only `size` bytes of what the caller passes.
//   NCCL_VERSION(X, Y, Z) = X * 10000 + Y * 100 + Z from 2.9 on (what ncclGetVersion returns).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

namespace hq::cuda::nccl {

enum ncclResult_t : int {
    ncclSuccess = 0,
    ncclUnhandledCudaError = 1,
    ncclSystemError = 2,
    ncclInternalError = 3,
    ncclInvalidArgument = 4,
    ncclInvalidUsage = 5,
    ncclRemoteError = 6,
    ncclInProgress = 7,
};

enum ncclDataType_t : int { ncclFloat32 = 7, ncclFloat64 = 8 };
enum ncclRedOp_t : int { ncclSum = 0 };

struct ncclComm;
using ncclComm_t = ncclComm*;

constexpr int kUniqueIdBytes = 128;
struct ncclUniqueId {
    char internal[kUniqueIdBytes];
};
static_assert(sizeof(ncclUniqueId) == 128, "ncclUniqueId layout");

// ncclConfig_t as of NCCL 2.14 (the first with ncclCommInitRankConfig); blocking = 0 makes every call return at once
// (ncclInProgress) and report its end through ncclCommGetAsyncError, which is what lets a stuck init or collective
// be polled, timed out and aborted.
struct ncclConfig_v21400 {
    size_t size;
    unsigned int magic;
    unsigned int version;
    int blocking;
};
constexpr unsigned int kConfigMagic = 0xcafebeef;
constexpr int nccl_version(int x, int y, int z) { return x * 10000 + y * 100 + z; }

using PFN_ncclGetVersion = ncclResult_t (*)(int* version);
using PFN_ncclGetUniqueId = ncclResult_t (*)(ncclUniqueId* id);
using PFN_ncclCommInitRank = ncclResult_t (*)(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank);
using PFN_ncclCommInitRankConfig = ncclResult_t (*)(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank,
                                                    ncclConfig_v21400* config);   // optional (2.14+)
using PFN_ncclCommFinalize = ncclResult_t (*)(ncclComm_t comm);                    // optional (2.14+)
using PFN_ncclCommDestroy = ncclResult_t (*)(ncclComm_t comm);
using PFN_ncclCommAbort = ncclResult_t (*)(ncclComm_t comm);
using PFN_ncclCommGetAsyncError = ncclResult_t (*)(ncclComm_t comm, ncclResult_t* state);
using PFN_ncclGetErrorString = const char* (*)(ncclResult_t result);
using PFN_ncclGetLastError = const char* (*)(ncclComm_t comm);                      // optional (2.13+)
using PFN_ncclAllReduce = ncclResult_t (*)(const void* sendbuff, void* recvbuff, size_t count,
                                           ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                                           cudaStream_t stream);
using PFN_ncclBroadcast = ncclResult_t (*)(const void* sendbuff, void* recvbuff, size_t count,
                                           ncclDataType_t datatype, int root, ncclComm_t comm, cudaStream_t stream);

// The resolved entry points (the optional ones may be null).
struct Api {
    PFN_ncclGetVersion get_version = nullptr;
    PFN_ncclGetUniqueId get_unique_id = nullptr;
    PFN_ncclCommInitRank comm_init_rank = nullptr;
    PFN_ncclCommInitRankConfig comm_init_rank_config = nullptr;
    PFN_ncclCommFinalize comm_finalize = nullptr;
    PFN_ncclCommDestroy comm_destroy = nullptr;
    PFN_ncclCommAbort comm_abort = nullptr;
    PFN_ncclCommGetAsyncError comm_get_async_error = nullptr;
    PFN_ncclGetErrorString get_error_string = nullptr;
    PFN_ncclGetLastError get_last_error = nullptr;
    PFN_ncclAllReduce all_reduce = nullptr;
    PFN_ncclBroadcast broadcast = nullptr;
};

}  // namespace hq::cuda::nccl
