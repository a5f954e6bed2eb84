// cublaslt_api.h — the part of the cuBLASLt C API that gemm.cpp uses, declared here because the toolkits we build
// with (the development machine, CI) ship nvcc and the CUDA runtime but no cuBLAS headers or libraries. The library
// is loaded at run time (dlopen, see cublaslt_load in gemm.h), so only types, enum values and function signatures
// are needed; they are facts of NVIDIA's C ABI, which has been stable for these entries from CUDA 11 through 13:
//
//   cublas_api.h    cublasStatus_t, cublasOperation_t, cublasComputeType_t (CUBLAS_COMPUTE_32F = 68)
//   cublasLt.h      handles and opaque descriptors (cublasLtMatmulAlgo_t = uint64_t data[8]),
//                   cublasLtMatrixLayoutAttribute_t, cublasLtMatmulDescAttributes_t,
//                   cublasLtMatmulPreferenceAttributes_t, cublasLtMatmulHeuristicResult_t (96 bytes) and the
//                   signatures of cublasLtCreate ... cublasLtMatmul
//   library_types.h cudaDataType_t (CUDA_R_32F = 0, CUDA_R_16BF = 14): taken from the CUDA runtime headers we have.
//
// Values were read from cublasLt.h of cuBLAS 11.x (NVIDIA, "Copyright 1993-2021") and checked against CUDA 12.x/13.x
// era copies of cublasLt.h / cublas_api.h (the same numbers; 13 adds CUBLASLT_MATRIX_LAYOUT_BATCH_MODE = 8 and drops
// the deprecated preference attributes 2, 4, 10, 11, 13, none of which we use).
#pragma once
#include <cuda_runtime.h>
#include <library_types.h>

#include <cstddef>
#include <cstdint>

namespace hq::cuda::lt {

// ---- cublas_api.h --------------------------------------------------------------------------------------------
enum cublasStatus_t : int {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_ARCH_MISMATCH = 8,
    CUBLAS_STATUS_MAPPING_ERROR = 11,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_INTERNAL_ERROR = 14,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
    CUBLAS_STATUS_LICENSE_ERROR = 16,
};

enum cublasOperation_t : int { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 };

enum cublasComputeType_t : int {
    CUBLAS_COMPUTE_32F = 68,   // fp32 accumulation (bf16 inputs run on tensor cores with fp32 accumulate)
};

// ---- cublasLt.h: handles and descriptors ---------------------------------------------------------------------
// The descriptors are created and destroyed by the library (…Create / …Destroy), so their sizes do not matter here.
struct cublasLtContext;
struct cublasLtMatmulDescOpaque;
struct cublasLtMatrixLayoutOpaque;
struct cublasLtMatmulPreferenceOpaque;
using cublasLtHandle_t = cublasLtContext*;
using cublasLtMatmulDesc_t = cublasLtMatmulDescOpaque*;
using cublasLtMatrixLayout_t = cublasLtMatrixLayoutOpaque*;
using cublasLtMatmulPreference_t = cublasLtMatmulPreferenceOpaque*;

// Semi-opaque algorithm descriptor, filled by the heuristic and passed back to cublasLtMatmul (we copy it by value).
struct cublasLtMatmulAlgo_t {
    uint64_t data[8];
};

struct cublasLtMatmulHeuristicResult_t {
    cublasLtMatmulAlgo_t algo;
    size_t workspaceSize;    // workspace this algorithm needs (<= the preference's maximum)
    cublasStatus_t state;    // the other fields are valid only when CUBLAS_STATUS_SUCCESS
    float wavesCount;
    int reserved[4];
};
static_assert(sizeof(cublasLtMatmulHeuristicResult_t) == 96, "cublasLtMatmulHeuristicResult_t layout");

// Values of cublasLtMatrixLayoutAttribute_t (attribute value types in the comments).
enum cublasLtMatrixLayoutAttribute_t : int {
    CUBLASLT_MATRIX_LAYOUT_TYPE = 0,                   // uint32_t (cudaDataType)
    CUBLASLT_MATRIX_LAYOUT_ORDER = 1,                  // int32_t, default CUBLASLT_ORDER_COL
    CUBLASLT_MATRIX_LAYOUT_ROWS = 2,                   // uint64_t
    CUBLASLT_MATRIX_LAYOUT_COLS = 3,                   // uint64_t
    CUBLASLT_MATRIX_LAYOUT_LD = 4,                     // int64_t
    CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT = 5,            // int32_t, default 1
    CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET = 6,   // int64_t, in elements, default 0
};

// Values of cublasLtMatmulDescAttributes_t.
enum cublasLtMatmulDescAttributes_t : int {
    CUBLASLT_MATMUL_DESC_COMPUTE_TYPE = 0,   // int32_t (set by cublasLtMatmulDescCreate)
    CUBLASLT_MATMUL_DESC_SCALE_TYPE = 1,     // int32_t (set by cublasLtMatmulDescCreate)
    CUBLASLT_MATMUL_DESC_POINTER_MODE = 2,   // int32_t, default host pointers for alpha/beta
    CUBLASLT_MATMUL_DESC_TRANSA = 3,         // int32_t (cublasOperation_t), default CUBLAS_OP_N
    CUBLASLT_MATMUL_DESC_TRANSB = 4,         // int32_t (cublasOperation_t), default CUBLAS_OP_N
};

// Values of cublasLtMatmulPreferenceAttributes_t.
enum cublasLtMatmulPreferenceAttributes_t : int {
    CUBLASLT_MATMUL_PREF_SEARCH_MODE = 0,             // uint32_t
    CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,     // uint64_t, default 0 (no workspace)
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,   // uint32_t, default 256
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,   // uint32_t, default 256
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,   // uint32_t, default 256
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,   // uint32_t, default 256
};

// ---- cublasLt.h: the functions we resolve with dlsym (C linkage; enums are passed as int) ---------------------
using PFN_cublasLtCreate = cublasStatus_t (*)(cublasLtHandle_t* handle);
using PFN_cublasLtDestroy = cublasStatus_t (*)(cublasLtHandle_t handle);
using PFN_cublasLtGetVersion = size_t (*)();
using PFN_cublasLtGetStatusString = const char* (*)(cublasStatus_t status);   // optional (cuBLAS >= 11.4)
using PFN_cublasLtMatmulDescCreate = cublasStatus_t (*)(cublasLtMatmulDesc_t* desc, cublasComputeType_t compute,
                                                        cudaDataType_t scale_type);
using PFN_cublasLtMatmulDescDestroy = cublasStatus_t (*)(cublasLtMatmulDesc_t desc);
using PFN_cublasLtMatmulDescSetAttribute = cublasStatus_t (*)(cublasLtMatmulDesc_t desc,
                                                              cublasLtMatmulDescAttributes_t attr, const void* buf,
                                                              size_t size);
using PFN_cublasLtMatrixLayoutCreate = cublasStatus_t (*)(cublasLtMatrixLayout_t* layout, cudaDataType_t type,
                                                          uint64_t rows, uint64_t cols, int64_t ld);
using PFN_cublasLtMatrixLayoutDestroy = cublasStatus_t (*)(cublasLtMatrixLayout_t layout);
using PFN_cublasLtMatrixLayoutSetAttribute = cublasStatus_t (*)(cublasLtMatrixLayout_t layout,
                                                                cublasLtMatrixLayoutAttribute_t attr,
                                                                const void* buf, size_t size);
using PFN_cublasLtMatmulPreferenceCreate = cublasStatus_t (*)(cublasLtMatmulPreference_t* pref);
using PFN_cublasLtMatmulPreferenceDestroy = cublasStatus_t (*)(cublasLtMatmulPreference_t pref);
using PFN_cublasLtMatmulPreferenceSetAttribute = cublasStatus_t (*)(cublasLtMatmulPreference_t pref,
                                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                                    const void* buf, size_t size);
using PFN_cublasLtMatmulAlgoGetHeuristic = cublasStatus_t (*)(
    cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
    cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc, cublasLtMatmulPreference_t pref,
    int requested_count, cublasLtMatmulHeuristicResult_t* results, int* returned_count);
// D = alpha·op(A)·op(B) + beta·C, column-major; alpha/beta point to host floats (the default pointer mode).
using PFN_cublasLtMatmul = cublasStatus_t (*)(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void* alpha,
                                              const void* A, cublasLtMatrixLayout_t Adesc, const void* B,
                                              cublasLtMatrixLayout_t Bdesc, const void* beta, const void* C,
                                              cublasLtMatrixLayout_t Cdesc, void* D, cublasLtMatrixLayout_t Ddesc,
                                              const cublasLtMatmulAlgo_t* algo, void* workspace,
                                              size_t workspace_bytes, cudaStream_t stream);

// The resolved entry points (filled once by cublaslt_load; get_status_string may be null).
struct Api {
    PFN_cublasLtCreate create = nullptr;
    PFN_cublasLtDestroy destroy = nullptr;
    PFN_cublasLtGetVersion get_version = nullptr;
    PFN_cublasLtGetStatusString get_status_string = nullptr;
    PFN_cublasLtMatmulDescCreate matmul_desc_create = nullptr;
    PFN_cublasLtMatmulDescDestroy matmul_desc_destroy = nullptr;
    PFN_cublasLtMatmulDescSetAttribute matmul_desc_set_attribute = nullptr;
    PFN_cublasLtMatrixLayoutCreate matrix_layout_create = nullptr;
    PFN_cublasLtMatrixLayoutDestroy matrix_layout_destroy = nullptr;
    PFN_cublasLtMatrixLayoutSetAttribute matrix_layout_set_attribute = nullptr;
    PFN_cublasLtMatmulPreferenceCreate matmul_preference_create = nullptr;
    PFN_cublasLtMatmulPreferenceDestroy matmul_preference_destroy = nullptr;
    PFN_cublasLtMatmulPreferenceSetAttribute matmul_preference_set_attribute = nullptr;
    PFN_cublasLtMatmulAlgoGetHeuristic matmul_algo_get_heuristic = nullptr;
    PFN_cublasLtMatmul matmul = nullptr;
};

}  // namespace hq::cuda::lt
