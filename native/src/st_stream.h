// st_stream.h — a streaming safetensors writer: every tensor is declared up front (so the header can be written
// first) and then written one at a time in declaration order, so a multi-GB shard never has to exist in memory.
// Same byte layout rules as SafeTensorsWriter (header JSON padded with spaces to a multiple of 8, offsets relative
// to the data start, contiguous, in declaration order). The file is written in place: callers build it inside a
// temp folder that is published with publish_dir (fsutil.h), so a partial file never appears under a final name.
// Every I/O failure (ENOSPC, EIO, permissions) throws hq::Error("E_IO", msg, Where{file, tensor}, hint).
#pragma once
#include <cstdint>
#include <cstdio>
#include <functional>
#include <future>
#include <map>
#include <string>
#include <vector>

#include "dtype.h"

namespace hq {

struct TensorDecl {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    uint64_t bytes() const;
};

class StreamingSafetensorsWriter {
  public:
    // Creates `path` (O_EXCL: never overwrites) and writes the header.
    StreamingSafetensorsWriter(const std::string& path, std::vector<TensorDecl> decls,
                               const std::map<std::string, std::string>& metadata);
    ~StreamingSafetensorsWriter();   // closes (no fsync) if finish() was not called
    StreamingSafetensorsWriter(const StreamingSafetensorsWriter&) = delete;
    StreamingSafetensorsWriter& operator=(const StreamingSafetensorsWriter&) = delete;

    // The next declared tensor's bytes; `name` must be that tensor and `bytes` its size.
    void write(const std::string& name, const void* data, size_t bytes);
    // fp32 values converted to the declared dtype (F32 / F16 / BF16). For F16 / BF16 the conversion runs in parallel
    // into a buffer the writer owns, and the bytes are written in the background while the caller prepares the next
    // tensor; a write error is thrown by the next call (or finish()).
    void write_f32(const std::string& name, const float* data, size_t numel);
    // The next declared tensor's bytes from a (mapped) buffer, written in 64 MiB chunks; `after_chunk(p, n)` runs
    // after each chunk (e.g. to drop the mapped pages, keeping resident memory at one chunk).
    void write_chunked(const std::string& name, const uint8_t* data, size_t bytes,
                       const std::function<void(const uint8_t*, size_t)>& after_chunk);
    // fsync + close; throws if some declared tensor was not written.
    void finish();
    uint64_t total_bytes() const { return total_; }

  private:
    void expect_next(const std::string& name, size_t bytes);
    void raw(const void* p, size_t n, const std::string& tensor);
    void wait_pending();
    std::vector<uint16_t> pend_buf_;   // converted bytes of the tensor being written by pending_
    std::future<void> pending_;
    std::string path_;
    std::vector<TensorDecl> decls_;
    size_t next_ = 0;
    int fd_ = -1;
    uint64_t total_ = 0;
};

// Size of the header block (8 + padded JSON) + data for these declarations: the exact file size.
uint64_t safetensors_file_size(const std::vector<TensorDecl>& decls, const std::map<std::string, std::string>& md);

}  // namespace hq
