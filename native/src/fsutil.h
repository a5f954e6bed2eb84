// fsutil.h — filesystem primitives with crash-safe semantics (POSIX).
//
// Durability rule used everywhere in H-QLoRA: a file or folder appears under its final name only when it is
// complete. Files: write to a temp sibling, fsync the file, rename over the target, fsync the parent dir.
// Folders: build a ".tmp-<name>-<pid>-<n>" sibling, fsync its files and itself, rename, fsync the parent.
// Every failure throws hq::Error("E_IO", msg naming the path and errno text, Where{file=path}, hint).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace hq {

// Writes `bytes` to `path` atomically (temp file in the same dir + fsync + rename + fsync dir).
// On any failure the temp file is removed and `path` is untouched.
void write_file_atomic(const std::string& path, const std::string& bytes);
// fsync a directory so that renames/creations inside it are durable.
void fsync_dir(const std::string& dir);
// fsync an existing regular file by path.
void fsync_file(const std::string& path);
// rename(2) `from` -> `to` (atomic within one filesystem; `to` is replaced if it is a file or an empty dir),
// then fsync the parent dir of `to`.
void rename_atomic(const std::string& from, const std::string& to);
// Whole file into a string. Throws E_IO naming the path.
std::string read_file(const std::string& path);

bool path_exists(const std::string& path);
bool is_directory(const std::string& path);
uint64_t file_size(const std::string& path);       // throws E_IO
void make_dirs(const std::string& path);            // mkdir -p; ok if it exists
void remove_all(const std::string& path);           // rm -rf; ok if it does not exist
std::vector<std::string> list_dir(const std::string& dir);  // entry names (no "." / ".."), sorted

// Path helpers (string-based, '/' separator).
std::string path_join(const std::string& a, const std::string& b);
std::string parent_dir(const std::string& path);    // "" -> ".", "a" -> ".", "/x/y" -> "/x"
std::string base_name(const std::string& path);     // "/x/y.json" -> "y.json"

// A unique temp sibling path for `final_path`: "<dir>/.tmp-<base>-<pid>-<counter>".
std::string temp_sibling(const std::string& final_path);

// Publishes a fully written temp folder under `final_dir`: fsyncs every regular file in `tmp_dir` and the folder,
// removes an existing `final_dir` (moved aside first, so a crash leaves either the old or the new folder), renames
// `tmp_dir` -> `final_dir` and fsyncs the parent.
void publish_dir(const std::string& tmp_dir, const std::string& final_dir);

// Builds a folder at a temp sibling of `dir` (".tmp-<name>-…") with `fill(tmp)`, then publishes it with publish_dir.
// On any failure the temp folder is removed and `dir` is left as it was.
void write_dir_atomic(const std::string& dir, const std::function<void(const std::string& tmp)>& fill);

}  // namespace hq
