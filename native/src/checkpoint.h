// checkpoint.h — durable training checkpoints (docs/CONTRACTS.md §2, reliability-anchors §5).
//
// <run>/checkpoints/step-NNNNNN/ holds
//   adapter.safetensors    the hierarchical adapter (CONTRACTS §4 names, via adapter_io's add_hierarchical_tensors)
//   optimizer.safetensors  AdamW state: "m.<param>" and "v.<param>" (F32, the param's shape); metadata adam_t
//   state.json             {step, micro_step, epoch, data_cursor, rng, scheduler, optimizer{t}, config_hash,
//                           compat{model, quantization, levels, target_modules, rslora}, loss_history_tail, ...}
// Protocol: everything is written into checkpoints/.tmp-step-NNNNNN (state.json last), every file and the folder
// are fsynced, the folder is renamed to step-NNNNNN and checkpoints/ is fsynced (fsutil publish_dir). A folder
// is complete iff it has state.json; .tmp-* folders are leftovers of a crash and are ignored/removed. Older
// checkpoints beyond `keep` are removed only after the new one is published (renamed to .tmp-del-* first so a
// crash during deletion never leaves a half-deleted folder that looks complete).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model.h"
#include "optimizer.h"

namespace hq {

struct CheckpointRef {
    int64_t step = 0;
    std::string path;   // absolute folder path
};

struct SavedCheckpoint {
    std::string path;
    uint64_t bytes = 0;
    std::vector<std::string> kept;     // complete checkpoints after pruning, oldest first
    std::vector<std::string> removed;  // folders pruned
};

// "step-000100"
std::string checkpoint_dir_name(int64_t step);
// Complete checkpoints under `ckpt_dir` (missing dir = none), ascending by step.
std::vector<CheckpointRef> list_checkpoints(const std::string& ckpt_dir);
// Removes leftover temp folders (.tmp-*) and returns the highest-step complete checkpoint, if any.
std::optional<CheckpointRef> find_resume_checkpoint(const std::string& ckpt_dir);

// Writes checkpoint `step` of `model` + `opt` with `state` (the trainer's state.json object; "step",
// "optimizer.t" and "files" are filled in here), then prunes to the newest `keep` (0 = keep all). Checkpoints whose
// state has "reason": "requested" (save now) are neither counted nor pruned. Throws E_IO.
SavedCheckpoint save_checkpoint(const std::string& ckpt_dir, int64_t step, Model& model, const AdamW& opt,
                                nlohmann::json state, int keep);

// Reads <path>/state.json (E_CHECKPOINT naming the file when missing or malformed).
nlohmann::json read_checkpoint_state(const std::string& path);

// Throws E_CHECKPOINT (where.file = state.json, where.key = the config key) when the checkpoint was made with
// another model, quantization, level list, target modules or rsLoRA setting than `expected_compat`
// (run_config's compat_json).
void check_checkpoint_compat(const nlohmann::json& state, const nlohmann::json& expected_compat,
                             const std::string& checkpoint_path);

// Loads adapter weights into `model` and m/v/t into `opt`; returns state.json. Shapes are validated
// (E_CHECKPOINT naming file and tensor).
nlohmann::json load_checkpoint(const std::string& path, Model& model, AdamW& opt);

}  // namespace hq
