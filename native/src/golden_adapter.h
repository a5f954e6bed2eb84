// golden_adapter.h — writes a hierarchical adapter folder (adapter.safetensors + adapter_metadata.json) from the
// adapter tensors of a golden reference file (test/reference/make_golden.py): the initial adapter
// (prefix "", B != 0) or the one after the golden AdamW trajectory (prefix "final."). Used by the merge tests and
// by the PEFT-compatibility input generator (native/tools/make_peft_inputs.cpp).
#pragma once
#include <string>

namespace hq {

// golden_file: test/golden/<model>.safetensors; base_dir: the fixture model folder recorded as base_model.path;
// prefix: "" or "final."; out_dir: created (atomically). Returns the adapter.safetensors path.
std::string write_adapter_from_golden(const std::string& golden_file, const std::string& base_dir,
                                      const std::string& prefix, const std::string& out_dir);

}  // namespace hq
