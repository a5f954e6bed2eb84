// mcq.h — multiple-choice (MMLU-style) scoring as qlora.py does it, and the .hqmcq question file
// (docs/CONTRACTS.md §7, schemas/mcq-file.schema.json).
//
// Scoring (trainer-anchors §2.4): for a prompt p = BOS + tokens("<header><shots><question>\nAnswer:") the model's
// logits at the LAST prompt position are read at the answer-letter columns choice_ids = [tok("A")[0], ..., tok("D")[0]];
// the prediction is the argmax over those (first on ties). Accuracy per subject, then the macro average over
// subjects (qlora.py's mmlu_eval_accuracy); the micro average (all questions equal) is reported beside it.
//
// Batching: questions are sorted by length (longest first) and packed into right-padded micro-batches [B, T]. The
// causal mask makes right padding invisible to real positions, so a batched score equals the unbatched one. The
// Model API only returns all-position logits [B, T, V], so B is bounded by max_logits_bytes (B·T·V·4 bytes) as well
// as max_batch: memory stays bounded for any vocabulary and prompt length.
//
// .hqmcq file (little-endian), the same framing as .hqtok:
//   0  8 B                    magic 48 51 4D 43 51 00 00 01 ("HQMCQ\0\0\1")
//   8  u32                    version = 1
//   12 u32                    H = byte length of the header JSON
//   16 H B                    UTF-8 header JSON, 0x20 padding to a multiple of 8            -> P = round8(16 + H)
//   P  u64 × (n_questions+1)  prompt start offsets into ids (first 0, last n_tokens, increasing: every prompt ≥ 1 token)
//   .. u32 × n_tokens         prompt token ids (BOS included), each < vocab_size
//   .. u32 × n_questions      answer index of each question, < n_choices
//   .. u32 × n_questions      subject index of each question, < len(subjects)
//   .. 0–7 B                  zero padding to a multiple of 8; the file ends exactly here
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model.h"

namespace hq {

constexpr char kHqmcqMagic[8] = {'H', 'Q', 'M', 'C', 'Q', 0, 0, 1};

struct McqFile {
    std::string path;
    nlohmann::json header;
    int64_t n_questions = 0, n_tokens = 0, vocab_size = 0, pad_id = 0;
    std::vector<std::string> choice_labels;   // ["A","B","C","D"]
    std::vector<int32_t> choice_ids;          // [n_choices] token id of each label
    std::vector<std::string> subjects;        // names, in the order subject indices refer to
    std::vector<uint64_t> offsets;            // [n_questions + 1]
    std::vector<uint32_t> ids;                // [n_tokens]
    std::vector<uint32_t> answer;             // [n_questions]
    std::vector<uint32_t> subject;            // [n_questions]

    int64_t length(int64_t i) const { return static_cast<int64_t>(offsets[i + 1] - offsets[i]); }
    int n_choices() const { return static_cast<int>(choice_ids.size()); }
};

// Reads and fully validates `path`; model_vocab_size > 0 additionally requires every id (choices, pad) below it.
// Throws E_MCQ (E_IO when unreadable) with the byte offset of the problem.
McqFile read_mcq_file(const std::string& path, int64_t model_vocab_size = 0);

// The exact bytes of a .hqmcq file. `header` supplies vocab_size, pad_id, choice_labels, choice_ids, subjects and
// any optional fields; format, version, n_questions and n_tokens are set here. For tests and tools.
std::string encode_mcq_file(const std::vector<std::vector<uint32_t>>& prompts, const std::vector<uint32_t>& answers,
                            const std::vector<uint32_t>& subjects, nlohmann::json header);

struct McqOptions {
    int max_batch = 32;                          // questions per forward at most
    size_t max_logits_bytes = size_t(256) << 20; // bound on the [B, T, V] fp32 logits of one forward
    int64_t max_len = 0;                         // prompts longer than this keep their last max_len tokens (0 = no limit)
    int64_t max_questions = 0;                   // score only the first N questions (0 = all)
    // Called after every forward with (questions done, total).
    std::function<void(int64_t, int64_t)> progress;
};

struct SubjectScore {
    std::string subject;
    int64_t n = 0, correct = 0;
    double accuracy = 0.0;
};

struct McqResult {
    int64_t n = 0, correct = 0, truncated = 0;
    double accuracy = 0.0;         // micro: correct / n
    double macro_accuracy = 0.0;   // mean over subjects with ≥ 1 question of their accuracy
    std::vector<SubjectScore> subjects;   // file order; subjects without questions are left out
    std::vector<float> choice_logits;     // [n, n_choices]
    std::vector<int32_t> predictions;     // [n]
    double seconds = 0.0;
    // {n, correct, accuracy, macro_accuracy, truncated, seconds, subjects:[{subject, n, correct, accuracy}]}
    nlohmann::json summary() const;
};

// Letter logits of arbitrary prompts (the scoring core): out[i*n_choices + k] = logits(prompt i)[last][choice_ids[k]].
// Prompts are batched as described above; `progress` as in McqOptions. Returns the number of prompts truncated.
int64_t choice_logits(Model& model, const std::vector<std::vector<int32_t>>& prompts,
                      const std::vector<int32_t>& choice_ids, const McqOptions& opt, std::vector<float>& out);

// Scores every question of `file` with the model as it is (eval mode is set here).
McqResult score_mcq(Model& model, const McqFile& file, const McqOptions& opt);

// While alive, the adapter contributes nothing: every lora_B is zeroed (so y = x·Wᵀ, the NF4 base alone);
// the weights are restored on destruction.
class AdapterOff {
  public:
    explicit AdapterOff(Model& model);
    ~AdapterOff();
    AdapterOff(const AdapterOff&) = delete;
    AdapterOff& operator=(const AdapterOff&) = delete;

  private:
    Model& model_;
    std::vector<std::vector<float>> saved_;
};

}  // namespace hq
