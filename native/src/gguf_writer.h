// gguf_writer.h — a streaming writer of GGUF v3 files (the llama.cpp / ggml model format).
//
// File layout (llama.cpp gguf-py constants, GGUF_VERSION 3), all integers little-endian:
//   u32 magic "GGUF" | u32 version = 3 | u64 n_tensors | u64 n_kv
//   n_kv × { string key | u32 value_type | value }            string = u64 length + UTF-8 bytes (no NUL)
//   n_tensors × { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
//   padding to general.alignment (32) | tensor data, each tensor at its offset (a multiple of the alignment)
// ne[0] is the innermost (contiguous) dimension, so a row-major [out, in] matrix has ne = {in, out}.
//
// Streaming: every key and every tensor's name, shape and type are declared first (the offsets follow from the
// shapes), then begin_data() writes the header and each tensor's data is written in declaration order, converted
// from fp32 one tensor at a time. The writer creates `path` with O_EXCL and never renames: callers build the file
// inside a temp folder that they publish when complete (merge.h's rule). Errors are hq::Error E_IO naming the file.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace hq {

// ggml tensor types written here (ggml.h enum ggml_type).
enum class GgmlType : uint32_t { F32 = 0, F16 = 1, Q8_0 = 8, BF16 = 30 };

// "f32" | "f16" | "bf16" | "q8_0" -> type; false for anything else.
bool ggml_type_from_name(const std::string& s, GgmlType* out);
const char* ggml_type_name(GgmlType t);
// Bytes of `n` elements of `t` (q8_0: n must be a multiple of 32; 34 bytes per block of 32).
uint64_t ggml_type_bytes(GgmlType t, int64_t n);
// llama_ftype of a file whose 2-D weights are `t` (general.file_type): ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7,
// MOSTLY_BF16 32.
uint32_t llama_file_type(GgmlType t);

// Q8_0 as ggml's quantize_row_q8_0_ref: per block of 32, d = amax / 127 (stored as f16), q = round(x / d).
void quantize_q8_0(const float* x, int64_t n, uint8_t* out);

// GGUF metadata value types (gguf-py GGUFValueType).
enum class GgufValueType : uint32_t {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7, STRING = 8,
    ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12
};

class GgufWriter {
  public:
    explicit GgufWriter(std::string path, uint32_t alignment = 32);
    ~GgufWriter();   // closes (no fsync) when finish() was not called; the caller removes its temp folder
    GgufWriter(const GgufWriter&) = delete;
    GgufWriter& operator=(const GgufWriter&) = delete;

    // ---- metadata (before begin_data); keys must be unique ----
    void add_u32(const std::string& key, uint32_t v);
    void add_i32(const std::string& key, int32_t v);
    void add_f32(const std::string& key, float v);
    void add_bool(const std::string& key, bool v);
    void add_string(const std::string& key, const std::string& v);
    void add_strings(const std::string& key, const std::vector<std::string>& v);
    void add_f32s(const std::string& key, const std::vector<float>& v);
    void add_i32s(const std::string& key, const std::vector<int32_t>& v);
    bool has_key(const std::string& key) const;

    // ---- tensors (before begin_data): `shape` in row-major (numpy) order, e.g. {out, in} ----
    void add_tensor(const std::string& name, const std::vector<int64_t>& shape, GgmlType type);

    // Writes header, metadata, tensor infos and the padding before the data.
    void begin_data();
    // The next declared tensor, from fp32 values (converted to its type). `name` must be that tensor.
    void write_tensor_f32(const std::string& name, const float* data, int64_t numel);
    // fsync + close; throws when a declared tensor was not written.
    void finish();

    const std::string& path() const { return path_; }
    uint64_t data_bytes() const { return data_end_; }

  private:
    struct Tensor {
        std::string name;
        std::vector<int64_t> shape;
        GgmlType type;
        uint64_t offset, bytes;
    };
    void put(const void* p, size_t n);
    void put_u32(uint32_t v) { put(&v, 4); }
    void put_u64(uint64_t v) { put(&v, 8); }
    void put_str(const std::string& s);
    void flush();
    void key(const std::string& k, GgufValueType t);

    std::string path_;
    uint32_t align_;
    int fd_ = -1;
    std::string kv_;          // serialized key/value pairs
    uint64_t n_kv_ = 0;
    std::vector<std::string> keys_;
    std::vector<Tensor> tensors_;
    uint64_t data_end_ = 0;   // bytes of the data section declared so far (aligned)
    size_t next_ = 0;         // next tensor to write
    bool begun_ = false, finished_ = false;
    std::string buf_;         // write buffer
    std::vector<uint8_t> conv_;
};

}  // namespace hq
