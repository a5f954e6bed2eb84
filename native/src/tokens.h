// tokens.h — the .hqtok token file (docs/CONTRACTS.md §3): validating reader, writer, and the batcher.
//
// File (little-endian): magic "HQTOK\0\0\1" | u32 version (1 or 2) | u32 H | H bytes header JSON + 0x20 pad to 8 |
//   u64 offsets[n_examples+1] | u32 ids[n_tokens] | u8 mask[n_tokens] | 0 pad to 8 | version 2 only (packed files,
//   header n_documents): u64 documents[n_documents+1], the document (original row) start offsets, every example
//   offset among them | the file ends here.
// Packed sequences (version 2): an example (a sequence the batcher takes) holds several documents back to back.
// The micro-batch then carries seg [B, T] (the document of each position within its row) for the model's document
// mask and per-document RoPE positions, and the first token of every document gets label -100, so no loss crosses
// a document boundary (transformers' DataCollatorWithFlattening: separator -100, position_ids per example).
// Every validation failure throws hq::Error("E_TOKENS", msg, Where{file, offset}, hint); the message names the
// example index when the problem is inside one example.
//
// Batching: the order of examples in epoch e is a permutation drawn from (seed, e) (identity without shuffle).
// A micro-batch takes the next B examples of that order, continuing into the next epoch when one ends, so every
// micro-batch has exactly B examples. Examples are truncated to max_len tokens, right-padded with pad_id to the
// longest example of the micro-batch; labels[t] = mask[t] ? ids[t] : -100, and -100 on padding.
// The DataCursor {epoch, position, seed} fully determines the rest of the stream: saving and restoring it
// reproduces the same micro-batches exactly.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace hq {

constexpr char kHqtokMagic[8] = {'H', 'Q', 'T', 'O', 'K', 0, 0, 1};
constexpr int32_t kIgnoreLabel = -100;

struct TokenFile {
    std::string path;
    nlohmann::json header;
    int64_t n_examples = 0, n_tokens = 0, vocab_size = 0;
    int64_t bos_id = -1, eos_id = -1, pad_id = 0;  // pad_id falls back to eos_id, then 0, when absent/null/-1
    std::vector<uint64_t> offsets;  // [n_examples + 1]
    std::vector<uint32_t> ids;      // [n_tokens]
    std::vector<uint8_t> mask;      // [n_tokens] 1 = training target
    bool packed = false;            // version 2: examples are packed documents
    std::vector<uint64_t> documents;  // [n_documents + 1] document start offsets (version 2; empty for version 1)

    int64_t length(int64_t i) const { return static_cast<int64_t>(offsets[i + 1] - offsets[i]); }
    // Target positions of example i when truncated to max_len (0 = no limit): mask[t] for t in [1, len) —
    // position 0 is never predicted (HF shift), nor (packed) the first token of any document.
    int64_t targets(int64_t i, int64_t max_len = 0) const;
    // Document of each of the first `len` tokens of example i, counted from 0 within the example (all 0 unpacked).
    void segments(int64_t i, int64_t len, int32_t* seg) const;
    int64_t total_targets(int64_t max_len = 0) const;
};

// Reads and fully validates `path`. model_vocab_size > 0 additionally requires every id (and pad_id) to be
// below it. Throws E_TOKENS (E_IO when the file cannot be read).
TokenFile read_token_file(const std::string& path, int64_t model_vocab_size = 0);

// The exact bytes of a token file holding `examples` (ids) with `masks` (same lengths). `header` supplies the
// optional fields (bos_id, eos_id, pad_id, tokenizer_sha256, source, created_by); format, version, n_examples,
// n_tokens (and n_documents) are set here, vocab_size is kept from `header`. With `documents` (one list of document
// lengths per example, summing to its length) the file is a packed version 2 file. For tests and tools.
std::string encode_token_file(const std::vector<std::vector<uint32_t>>& examples,
                              const std::vector<std::vector<uint8_t>>& masks, nlohmann::json header,
                              const std::vector<std::vector<int64_t>>& documents = {});

// Position in the example stream. `position` indexes the epoch's permutation (0 <= position < n_examples).
struct DataCursor {
    int64_t epoch = 0;
    int64_t position = 0;
    uint64_t seed = 0;
    nlohmann::json to_json() const;
    static DataCursor from_json(const nlohmann::json& j);  // throws E_CHECKPOINT on a malformed object
    bool operator==(const DataCursor& o) const {
        return epoch == o.epoch && position == o.position && seed == o.seed;
    }
};

// Permutation of [0, n) for (seed, epoch): Fisher–Yates driven by splitmix64, identical on every platform.
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

struct MicroBatch {
    int B = 0, T = 0;
    std::vector<int32_t> ids;      // [B, T]
    std::vector<int32_t> labels;   // [B, T]
    std::vector<int32_t> seg;      // [B, T] document of each position within its row (packed files; else empty);
                                   //        the padding of row b is one more document after its last
    std::vector<int64_t> examples; // [B] example indices
    int64_t n_targets = 0;         // Σ_b #{t >= 1 : labels[b, t] != -100}
    int64_t n_real_tokens = 0;     // non-padding tokens
};

// The documents of a micro-batch for Model::forward_backward_packed: nullptr when its file is not packed.
inline const int32_t* seg_of(const MicroBatch& mb) { return mb.seg.empty() ? nullptr : mb.seg.data(); }

// Builds one micro-batch from the given examples (in order). max_len 0 = no truncation.
MicroBatch make_micro_batch(const TokenFile& f, const std::vector<int64_t>& examples, int64_t max_len);

class Batcher {
  public:
    Batcher(const TokenFile& file, int micro_batch_size, int64_t max_len, bool shuffle, uint64_t seed);
    MicroBatch next();
    DataCursor cursor() const { return cursor_; }
    // Restores a saved cursor. Throws E_CHECKPOINT if it does not fit this file (position out of range).
    void restore(const DataCursor& c);
    // Fractional epochs consumed.
    double epoch_progress() const;

  private:
    void load_epoch();
    const TokenFile& file_;
    int micro_batch_;
    int64_t max_len_;
    bool shuffle_;
    DataCursor cursor_;
    std::vector<int64_t> perm_;
    int64_t perm_epoch_ = -1;
};

}  // namespace hq
