// gemm.cpp — row-major bf16 GEMMs on cuBLASLt loaded at run time. See gemm.h.
//
// Mapping: a row-major [R, C] matrix with leading dimension ld is, read column-major, its transpose [C, R] with the
// same ld. So C [M, N] row-major = Cᵀ [N, M] column-major = op(B)ᵀ·op(A)ᵀ, i.e. one column-major GEMM with
// m = N, n = M, k = K, its "A" = our B (transposed iff tb) and its "B" = our A (transposed iff ta).
#include "gemm.h"

#include <dlfcn.h>
#include <glob.h>
#include <unistd.h>

#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <mutex>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "cublaslt_api.h"

namespace hq::cuda {

namespace {

using namespace lt;

const char* status_name(cublasStatus_t s) {
    switch (s) {
        case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
        case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
        case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
        case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    }
    return "unknown cuBLAS status";
}

// ---- loading ---------------------------------------------------------------------------------------------------

struct Loaded {
    std::mutex mu;
    bool done = false;
    std::string path;    // what loaded
    std::string error;   // non-empty: the load failed (the same error is thrown on every later call)
    std::string hint;
    Api api;
};
Loaded& loaded() {
    static Loaded l;
    return l;
}

const char* const kSonames[] = {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"};

// Candidate files in the toolkit and Python-wheel folders, in search order (folders that do not exist are skipped).
std::vector<std::string> folder_candidates() {
    std::vector<std::string> dirs = {"/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"};
    // nvidia-cublas-cu12 installs nvidia/cublas/lib/libcublasLt.so.12; the CUDA 13 wheel nvidia/cu13/lib/.
    std::vector<std::string> patterns;
    auto add_python_roots = [&](const std::string& root) {
        for (const char* sp : {"site-packages", "dist-packages"})
            for (const char* sub : {"nvidia/cublas/lib", "nvidia/cu13/lib"})
                patterns.push_back(root + "/python3*/" + sp + "/" + sub);
    };
    add_python_roots("/usr/lib");
    add_python_roots("/usr/local/lib");
    add_python_roots("/opt/*/.venv/lib");
    for (const char* env : {"VIRTUAL_ENV", "CONDA_PREFIX"}) {
        const char* v = std::getenv(env);
        if (v && *v) {
            add_python_roots(std::string(v) + "/lib");
            if (std::string(env) == "CONDA_PREFIX") dirs.push_back(std::string(v) + "/lib");   // conda's libcublas
        }
    }
    for (const std::string& p : patterns) {
        glob_t g{};
        if (glob(p.c_str(), GLOB_ONLYDIR | GLOB_NOSORT, nullptr, &g) == 0)
            for (size_t i = 0; i < g.gl_pathc; i++) dirs.emplace_back(g.gl_pathv[i]);
        globfree(&g);
    }
    std::vector<std::string> files;
    for (const std::string& d : dirs)
        for (const char* so : kSonames) files.push_back(d + "/" + so);
    return files;
}

bool file_exists(const std::string& p) { return access(p.c_str(), F_OK) == 0; }

// Resolves every entry point from `h`; returns the first missing symbol's name, or "" when all are there.
std::string resolve(void* h, Api& a) {
    auto sym = [&](const char* name, auto& fn) -> bool {
        void* p = dlsym(h, name);
        fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
        return p != nullptr;
    };
#define HQ_LT_SYM(field, name) \
    if (!sym(name, a.field)) return name
    HQ_LT_SYM(create, "cublasLtCreate");
    HQ_LT_SYM(destroy, "cublasLtDestroy");
    HQ_LT_SYM(get_version, "cublasLtGetVersion");
    HQ_LT_SYM(matmul_desc_create, "cublasLtMatmulDescCreate");
    HQ_LT_SYM(matmul_desc_destroy, "cublasLtMatmulDescDestroy");
    HQ_LT_SYM(matmul_desc_set_attribute, "cublasLtMatmulDescSetAttribute");
    HQ_LT_SYM(matrix_layout_create, "cublasLtMatrixLayoutCreate");
    HQ_LT_SYM(matrix_layout_destroy, "cublasLtMatrixLayoutDestroy");
    HQ_LT_SYM(matrix_layout_set_attribute, "cublasLtMatrixLayoutSetAttribute");
    HQ_LT_SYM(matmul_preference_create, "cublasLtMatmulPreferenceCreate");
    HQ_LT_SYM(matmul_preference_destroy, "cublasLtMatmulPreferenceDestroy");
    HQ_LT_SYM(matmul_preference_set_attribute, "cublasLtMatmulPreferenceSetAttribute");
    HQ_LT_SYM(matmul_algo_get_heuristic, "cublasLtMatmulAlgoGetHeuristic");
    HQ_LT_SYM(matmul, "cublasLtMatmul");
#undef HQ_LT_SYM
    sym("cublasLtGetStatusString", a.get_status_string);   // optional
    return "";
}

const char* const kLoadHint =
    "install cuBLAS 12/13 (libcublasLt.so: the CUDA toolkit, or the Python wheel nvidia-cublas (CUDA 13) / "
    "nvidia-cublas-cu12) or set HQ_CUBLASLT=/path/to/libcublasLt.so.13";

// Tries one candidate; on success fills l.api / l.path. `tried` collects each name, with dlerror's reason when the
// file exists (or was named explicitly) but did not load.
bool try_open(Loaded& l, const std::string& name, bool explicit_path, std::vector<std::string>& tried) {
    void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char* e = dlerror();
        const bool say_why = explicit_path || (name.find('/') != std::string::npos && file_exists(name));
        tried.push_back(say_why ? name + " (" + (e ? e : "dlopen failed") + ")" : name);
        return false;
    }
    Api a;
    const std::string missing = resolve(h, a);
    if (!missing.empty()) {
        tried.push_back(name + " (no symbol " + missing + ")");
        dlclose(h);
        return false;
    }
    l.api = a;
    l.path = name;
    return true;   // the handle stays open for the life of the process
}

const Api& api() {
    cublaslt_load();
    return loaded().api;
}

void check(cublasStatus_t s, const char* call, const std::string& what) {
    if (s == CUBLAS_STATUS_SUCCESS) return;
    const Api& a = loaded().api;
    const char* desc = a.get_status_string ? a.get_status_string(s) : nullptr;
    std::string hint = "check the GPU with nvidia-smi; if the shape looks valid, report this with the trainer log";
    if (s == CUBLAS_STATUS_ALLOC_FAILED)
        hint = "the GPU ran out of memory: lower training.micro_batch_size or the sequence length, or turn on "
               "training.gradient_checkpointing";
    else if (s == CUBLAS_STATUS_ARCH_MISMATCH || s == CUBLAS_STATUS_NOT_SUPPORTED)
        hint = "this GPU/cuBLAS combination does not support bf16 GEMMs with fp32 accumulation (needs sm_80 or "
               "newer and cuBLAS >= 11); set hardware.device to cpu";
    throw Error("E_CUDA",
                HQ_MSG("cuBLASLt call " << call << " failed: " << status_name(s) << " (" << int(s)
                                        << (desc ? std::string(", ") + desc : std::string()) << ") " << what),
                Where{}, hint);
}

// Largest power of two (<= 256) dividing the address: the alignment we promise the heuristic.
uint32_t ptr_alignment(const void* p) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    if (a == 0) return 256;
    const uintptr_t low = a & (~a + 1);
    return low >= 256 ? 256u : static_cast<uint32_t>(low);
}

// ---- plans -----------------------------------------------------------------------------------------------------

struct PlanKey {
    int64_t v[15];
    bool operator==(const PlanKey& o) const { return std::memcmp(v, o.v, sizeof(v)) == 0; }
};
struct PlanKeyHash {
    size_t operator()(const PlanKey& k) const {
        uint64_t h = 1469598103934665603ull;   // FNV-1a over the 64-bit words
        for (int64_t x : k.v) {
            h ^= static_cast<uint64_t>(x);
            h *= 1099511628211ull;
        }
        return static_cast<size_t>(h);
    }
};

struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;   // column-major "A" (our B), "B" (our A), C = D
    cublasLtMatmulAlgo_t algo{};
    size_t workspace = 0;
};

std::string shape_text(bool ta, bool tb, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb, int64_t ldc,
                       DType ct, int batch) {
    return HQ_MSG("for the row-major GEMM C[" << M << "," << N << "] (" << (ct == DType::F32 ? "fp32" : "bf16")
                                              << ") = op(A)·op(B), K=" << K << ", ta=" << ta << ", tb=" << tb
                                              << ", lda=" << lda << ", ldb=" << ldb << ", ldc=" << ldc
                                              << ", batch=" << batch);
}

}  // namespace

std::string cublaslt_load() {
    Loaded& l = loaded();
    std::lock_guard<std::mutex> lock(l.mu);
    if (l.done) {
        if (!l.error.empty()) throw Error("E_CUDA", l.error, Where{}, l.hint);
        return l.path;
    }
    l.done = true;
    std::vector<std::string> tried;
    bool ok = false;
    const char* env = std::getenv("HQ_CUBLASLT");
    if (env && *env) {
        // An explicit override is used alone: falling back would hide a wrong path.
        ok = try_open(l, env, true, tried);
        if (!ok) {
            l.error = HQ_MSG("cuBLASLt not found (tried: HQ_CUBLASLT=" << tried.back() << ")");
            l.hint = "point HQ_CUBLASLT at an existing libcublasLt.so.12/.13, or unset it to search the default "
                     "locations";
        }
    } else {
        for (const char* so : kSonames)
            if ((ok = try_open(l, so, false, tried))) break;
        if (!ok)
            for (const std::string& f : folder_candidates())
                if ((ok = try_open(l, f, false, tried))) break;
        if (!ok) {
            std::string list;
            for (const std::string& t : tried) list += (list.empty() ? "" : ", ") + t;
            l.error = "cuBLASLt not found (tried: " + list + ")";
            l.hint = kLoadHint;
        }
    }
    if (!ok) throw Error("E_CUDA", l.error, Where{}, l.hint);
    return l.path;
}

struct Gemm::Impl {
    cublasLtHandle_t handle = nullptr;
    DeviceBuffer<uint8_t> workspace;
    size_t workspace_bytes = 0;
    std::unordered_map<PlanKey, Plan, PlanKeyHash> plans;

    ~Impl() {
        const Api& a = loaded().api;
        for (auto& kv : plans) {
            Plan& p = kv.second;
            if (p.a) a.matrix_layout_destroy(p.a);
            if (p.b) a.matrix_layout_destroy(p.b);
            if (p.c) a.matrix_layout_destroy(p.c);
            if (p.desc) a.matmul_desc_destroy(p.desc);
        }
        if (handle) a.destroy(handle);
    }

    cublasLtMatrixLayout_t layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld, int batch,
                                  int64_t stride, const std::string& what) {
        const Api& a = loaded().api;
        cublasLtMatrixLayout_t l = nullptr;
        check(a.matrix_layout_create(&l, type, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols), ld),
              "cublasLtMatrixLayoutCreate", what);
        if (batch > 1) {
            const int32_t count = batch;
            try {
                check(a.matrix_layout_set_attribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)),
                      "cublasLtMatrixLayoutSetAttribute(BATCH_COUNT)", what);
                check(a.matrix_layout_set_attribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                    sizeof(stride)),
                      "cublasLtMatrixLayoutSetAttribute(STRIDED_BATCH_OFFSET)", what);
            } catch (...) {
                a.matrix_layout_destroy(l);
                throw;
            }
        }
        return l;
    }

    // Builds descriptors and queries the heuristic once per key. Alignments are part of the key because the
    // heuristic may pick a vectorised kernel that needs them.
    const Plan& plan(const PlanKey& key, bool ta, bool tb, int64_t M, int64_t N, int64_t K, int64_t lda,
                     int64_t ldb, int64_t ldc, DType ct, int batch, int64_t sA, int64_t sB, int64_t sC,
                     uint32_t al_a, uint32_t al_b, uint32_t al_c) {
        auto it = plans.find(key);
        if (it != plans.end()) return it->second;
        const Api& a = loaded().api;
        const std::string what = shape_text(ta, tb, M, N, K, lda, ldb, ldc, ct, batch);
        const cudaDataType_t ctype = ct == DType::F32 ? CUDA_R_32F : CUDA_R_16BF;
        Plan p;
        try {
            check(a.matmul_desc_create(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate", what);
            const int32_t opa = tb ? CUBLAS_OP_T : CUBLAS_OP_N;   // column-major "A" = our B
            const int32_t opb = ta ? CUBLAS_OP_T : CUBLAS_OP_N;   // column-major "B" = our A
            check(a.matmul_desc_set_attribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)),
                  "cublasLtMatmulDescSetAttribute(TRANSA)", what);
            check(a.matmul_desc_set_attribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)),
                  "cublasLtMatmulDescSetAttribute(TRANSB)", what);
            // Stored column-major shapes: our B is [K, N] row-major (= [N, K] col-major) or [N, K] (= [K, N]).
            p.a = layout(CUDA_R_16BF, tb ? K : N, tb ? N : K, ldb, batch, sB, what);
            p.b = layout(CUDA_R_16BF, ta ? M : K, ta ? K : M, lda, batch, sA, what);
            p.c = layout(ctype, N, M, ldc, batch, sC, what);

            // The preference lives only for the heuristic query (destroyed on every path).
            struct Pref {
                const Api& a;
                cublasLtMatmulPreference_t p = nullptr;
                ~Pref() {
                    if (p) a.matmul_preference_destroy(p);
                }
            } pref{a};
            check(a.matmul_preference_create(&pref.p), "cublasLtMatmulPreferenceCreate", what);
            const uint64_t ws = workspace_bytes;
            const uint32_t al_lt_a = al_b, al_lt_b = al_a;   // column-major A/B are our B/A
            check(a.matmul_preference_set_attribute(pref.p, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
                  "cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)", what);
            check(a.matmul_preference_set_attribute(pref.p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_lt_a,
                                                    sizeof(al_lt_a)),
                  "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT_A_BYTES)", what);
            check(a.matmul_preference_set_attribute(pref.p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_lt_b,
                                                    sizeof(al_lt_b)),
                  "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT_B_BYTES)", what);
            check(a.matmul_preference_set_attribute(pref.p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c,
                                                    sizeof(al_c)),
                  "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT_C_BYTES)", what);
            check(a.matmul_preference_set_attribute(pref.p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c,
                                                    sizeof(al_c)),
                  "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT_D_BYTES)", what);
            cublasLtMatmulHeuristicResult_t results[4];
            int n = 0;
            const cublasStatus_t hs =
                a.matmul_algo_get_heuristic(handle, p.desc, p.a, p.b, p.c, p.c, pref.p, 4, results, &n);
            if (hs == CUBLAS_STATUS_NOT_SUPPORTED) n = 0;   // "no heuristic for this configuration": reported below
            else check(hs, "cublasLtMatmulAlgoGetHeuristic", what);
            int pick = -1;
            for (int i = 0; i < n && pick < 0; i++)
                if (results[i].state == CUBLAS_STATUS_SUCCESS && results[i].workspaceSize <= workspace_bytes)
                    pick = i;
            if (pick < 0)
                throw Error("E_CUDA",
                            HQ_MSG("cuBLASLt has no algorithm " << what << " (bf16 inputs, fp32 compute, strides "
                                                                << sA << "/" << sB << "/" << sC << ", alignments "
                                                                << al_a << "/" << al_b << "/" << al_c
                                                                << " bytes, workspace " << workspace_bytes << ")"),
                            Where{},
                            "needs an sm_80+ GPU and cuBLAS >= 11; if this shape is unusual, report it with the log");
            p.algo = results[pick].algo;
            p.workspace = results[pick].workspaceSize;
        } catch (...) {
            if (p.a) a.matrix_layout_destroy(p.a);
            if (p.b) a.matrix_layout_destroy(p.b);
            if (p.c) a.matrix_layout_destroy(p.c);
            if (p.desc) a.matmul_desc_destroy(p.desc);
            throw;
        }
        return plans.emplace(key, p).first->second;
    }
};

Gemm::Gemm(cudaStream_t stream, size_t workspace_bytes) : impl_(std::make_unique<Impl>()), stream_(stream) {
    const Api& a = api();
    check(a.create(&impl_->handle), "cublasLtCreate", "(creating the cuBLASLt handle)");
    impl_->workspace.resize(workspace_bytes);
    impl_->workspace_bytes = workspace_bytes;
}

Gemm::~Gemm() = default;

void Gemm::run(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const bf16* A, int64_t lda,
               const bf16* B, int64_t ldb, float beta, void* C, DType ct, int64_t ldc, int batch, int64_t strideA,
               int64_t strideB, int64_t strideC, const void* Cin) {
    if (M == 0 || N == 0 || batch == 0) return;
    if (!Cin) Cin = C;
    HQ_ASSERT(M > 0 && N > 0 && K > 0 && batch > 0);
    HQ_ASSERT(lda >= (ta ? M : K) && ldb >= (tb ? K : N) && ldc >= N);
    if (batch == 1) strideA = strideB = strideC = 0;   // not part of the problem: keep the cache key canonical
    const uint32_t al_a = ptr_alignment(A), al_b = ptr_alignment(B),
                   al_c = std::min(ptr_alignment(C), ptr_alignment(Cin));
    const PlanKey key{{ta, tb, M, N, K, lda, ldb, ldc, ct == DType::F32, batch, strideA, strideB, strideC,
                       int64_t(al_a) << 32 | al_b, al_c}};
    const Plan& p = impl_->plan(key, ta, tb, M, N, K, lda, ldb, ldc, ct, batch, strideA, strideB, strideC, al_a, al_b,
                                al_c);
    const Api& a = loaded().api;
    const cublasStatus_t st = a.matmul(impl_->handle, p.desc, &alpha, B, p.a, A, p.b, &beta, Cin, p.c, C, p.c, &p.algo,
                                       p.workspace ? impl_->workspace.data() : nullptr, p.workspace, stream_);
    if (st != CUBLAS_STATUS_SUCCESS)
        check(st, "cublasLtMatmul", shape_text(ta, tb, M, N, K, lda, ldb, ldc, ct, batch));
}

}  // namespace hq::cuda
