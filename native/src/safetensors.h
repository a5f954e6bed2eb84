// safetensors.h — a validating reader (mmap) and an atomic writer for the safetensors format, plus a loader for a
// Hugging Face model folder (single file or sharded with model.safetensors.index.json).
//
// File layout: u64 N (LE) | N bytes UTF-8 JSON header | byte buffer. Offsets in the header are relative to the
// start of the byte buffer (file offset 8 + N). The reader enforces exactly the rules of the reference Rust parser
// (safetensors@24b0b285 `read_metadata` / `Metadata::validate`, docs/CONTRACTS.md and reliability-anchors §4.2),
// and additionally rejects duplicate tensor names (the README disallows them). Every problem throws
// hq::Error("E_SAFETENSORS", msg, Where{file, tensor, offset}, hint).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dtype.h"

namespace hq {

constexpr uint64_t kSafetensorsMaxHeader = 100000000;  // MAX_HEADER_SIZE of the reference parser

struct TensorInfo {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;   // [] = 0-rank scalar
    uint64_t begin = 0, end = 0;  // byte range relative to the data start (END exclusive)
    int64_t numel() const;        // product of shape (1 for 0-rank)
};

class SafeTensorsFile {
  public:
    // mmaps `path` read-only and validates it. Throws E_SAFETENSORS (E_IO when it cannot be opened).
    static std::unique_ptr<SafeTensorsFile> open(const std::string& path);
    // Same validation over caller-owned memory (no copy; `data` must outlive the object). `name` is used in errors.
    static std::unique_ptr<SafeTensorsFile> from_memory(const uint8_t* data, size_t size, std::string name);
    ~SafeTensorsFile();
    SafeTensorsFile(const SafeTensorsFile&) = delete;
    SafeTensorsFile& operator=(const SafeTensorsFile&) = delete;

    const std::vector<TensorInfo>& tensors() const { return tensors_; }  // sorted by data offset
    const TensorInfo* find(const std::string& name) const;               // nullptr if absent
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    const std::string& path() const { return path_; }
    uint64_t header_size() const { return header_size_; }   // N
    uint64_t data_start() const { return 8 + header_size_; }
    uint64_t file_size() const { return size_; }

    // Pointer to the first byte of the tensor's data (may be unaligned: use memcpy for typed reads).
    const uint8_t* data(const TensorInfo& t) const { return base_ + 8 + header_size_ + t.begin; }

    // F32 / F16 / BF16 / F64 converted to fp32, row-major, numel() values. Throws E_SAFETENSORS naming the tensor
    // if it is missing (hint lists similar names) or has another dtype.
    std::vector<float> read_f32(const std::string& name) const;
    // Same into caller memory; `numel` must equal the tensor's element count.
    void read_f32_into(const std::string& name, float* out, size_t numel) const;
    // Converts an arbitrary TensorInfo of this file (same dtype rules as read_f32).
    void convert_f32(const TensorInfo& t, float* out) const;

  private:
    SafeTensorsFile() = default;
    void parse();
    std::string path_;
    const uint8_t* base_ = nullptr;
    size_t size_ = 0;
    void* map_ = nullptr;   // mmap'd region (nullptr for from_memory)
    size_t map_len_ = 0;
    uint64_t header_size_ = 0;
    std::vector<TensorInfo> tensors_;
    std::map<std::string, size_t> index_;
    std::map<std::string, std::string> metadata_;
};

class SafeTensorsWriter {
  public:
    // Copies `bytes` of `data`; `bytes` must equal numel(shape) * dtype_bits / 8. Duplicate names throw.
    void add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data, size_t bytes);
    void add_f32(const std::string& name, std::vector<int64_t> shape, const float* data);
    void set_metadata(const std::string& key, const std::string& value);
    // The exact file bytes. Layout as the reference writer: tensors sorted by dtype alignment descending, then
    // name; header JSON padded with spaces to a multiple of 8.
    std::string serialize() const;
    // serialize() + write_file_atomic: never leaves a partial file under `path`.
    void write_atomic(const std::string& path) const;
    size_t size() const { return entries_.size(); }

  private:
    struct Entry {
        std::string name;
        DType dtype;
        std::vector<int64_t> shape;
        std::string bytes;
    };
    std::vector<Entry> entries_;
    std::map<std::string, std::string> metadata_;
};

// The safetensors weights of a model folder: model.safetensors, or model.safetensors.index.json + shards, or (no
// index) every *.safetensors in the folder. The index is validated: every mapped shard must exist, parse, and
// contain the tensor mapped to it.
class ModelWeights {
  public:
    static ModelWeights open_dir(const std::string& dir);
    ModelWeights() = default;
    ModelWeights(ModelWeights&&) = default;
    ModelWeights& operator=(ModelWeights&&) = default;

    // Tensor info by name; *file (if given) receives the shard holding it. nullptr if absent.
    const TensorInfo* find(const std::string& name, const SafeTensorsFile** file = nullptr) const;
    bool has(const std::string& name) const { return find(name) != nullptr; }
    std::vector<float> read_f32(const std::string& name) const;   // throws E_SAFETENSORS naming dir + tensor
    void read_f32_into(const std::string& name, float* out, size_t numel) const;
    std::vector<std::string> names() const;                        // sorted
    const std::vector<std::unique_ptr<SafeTensorsFile>>& files() const { return files_; }
    const std::string& dir() const { return dir_; }
    const std::string& index_path() const { return index_path_; } // "" when not sharded

  private:
    std::string dir_, index_path_;
    std::vector<std::unique_ptr<SafeTensorsFile>> files_;
    std::map<std::string, size_t> where_;   // tensor -> index in files_
};

}  // namespace hq
