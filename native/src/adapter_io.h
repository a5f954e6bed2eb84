// adapter_io.h — saving/loading the hierarchical adapter and exporting a flat PEFT adapter (docs/CONTRACTS.md §4).
//
// Hierarchical file (adapter.safetensors, F32): per adapted module M and level j
//   M.levels.{j}.lora_A.weight [r_j, in]     = rows [off_j, off_j + r_j) of A_cat [R, in]
//   M.levels.{j}.lora_B.weight [out, r_j]    = cols [off_j, off_j + r_j) of B_cat [out, R]
// metadata: format=pt, hqlora.version=1, hqlora.levels (JSON), hqlora.target_modules (JSON), hqlora.rslora.
// PEFT export (adapter_model.safetensors + adapter_config.json), r = lora_alpha = R:
//   base_model.model.M.lora_A.weight [R, in]  = concat_rows(s_j * A_j)
//   base_model.model.M.lora_B.weight [out, R] = concat_cols(B_j)
// Folders are written atomically: built in a temp sibling, fsynced, renamed over the final name.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "model.h"
#include "safetensors.h"

namespace hq {

// Writes dir/adapter.safetensors + dir/adapter_metadata.json. `extra_metadata` is merged into
// adapter_metadata.json (keys base_model, training, created, trainer_version, ... override the defaults).
void save_hierarchical_adapter(Model& model, const std::string& dir, const nlohmann::json& extra_metadata);

// The hierarchical tensors only (no folder, no metadata.json) into an existing writer, e.g. for checkpoints.
void add_hierarchical_tensors(Model& model, SafeTensorsWriter& w);

// Loads adapter weights from a hierarchical adapter.safetensors (or a folder holding one) into the model's
// params. Throws E_SAFETENSORS / E_SHAPE naming the file and tensor for missing modules, level count or rank
// mismatches, or shape mismatches.
void load_hierarchical_adapter(Model& model, const std::string& file);

// Flat PEFT adapter folder: adapter_model.safetensors + adapter_config.json (sorted keys, indent 2).
void export_peft(Model& model, const std::string& dir, const std::string& base_model_name_or_path);

// The adapter_config.json object export_peft writes.
nlohmann::json peft_adapter_config(Model& model, const std::string& base_model_name_or_path);

}  // namespace hq
