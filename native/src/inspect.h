// inspect.h — `hqlora-train inspect <file.safetensors | model-folder>`: validate with the native parser and
// describe the contents as one JSON object (docs/CONTRACTS.md §1).
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace hq {

// File:   {"file", "header_bytes", "metadata", "tensors":[{"name","dtype","shape","offset","bytes"}]}
//         (offset = absolute byte offset of the tensor data in the file)
// Folder: {"dir", "config":{...summary or raw config.json}, "shards":[{"file","header_bytes","metadata",
//          "n_tensors"}], "index": path|null, "n_tensors", "total_bytes", "tensors":[{..., "file"}]}
// Throws hq::Error (E_SAFETENSORS / E_IO / E_CONFIG) for an invalid input.
nlohmann::json inspect_path(const std::string& path);

}  // namespace hq
