// st_stream.cpp — streaming safetensors writer (see st_stream.h).
#include "st_stream.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include "error.h"

namespace hq {

uint64_t TensorDecl::bytes() const {
    uint64_t n = 1;
    for (int64_t d : shape) n *= uint64_t(d);
    return n * uint64_t(dtype_bits(dtype)) / 8;
}

namespace {

std::string header_json(const std::vector<TensorDecl>& decls, const std::map<std::string, std::string>& md) {
    // ordered_json keeps declaration order, so data offsets increase through the header like the reference writer.
    nlohmann::ordered_json h = nlohmann::ordered_json::object();
    if (!md.empty()) {
        nlohmann::ordered_json m = nlohmann::ordered_json::object();
        for (const auto& [k, v] : md) m[k] = v;
        h["__metadata__"] = m;
    }
    uint64_t off = 0;
    for (const TensorDecl& d : decls) {
        const uint64_t b = d.bytes();
        h[d.name] = {{"dtype", dtype_name(d.dtype)}, {"shape", d.shape}, {"data_offsets", {off, off + b}}};
        off += b;
    }
    std::string s = h.dump();
    while (s.size() % 8) s.push_back(' ');
    return s;
}

// dtype.cpp's f32_to_bf16 (round to nearest even, NaN kept quiet), inline here so the bulk loop vectorises.
inline uint16_t bf16_rne(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);
    return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

}  // namespace

uint64_t safetensors_file_size(const std::vector<TensorDecl>& decls, const std::map<std::string, std::string>& md) {
    uint64_t n = 8 + header_json(decls, md).size();
    for (const TensorDecl& d : decls) n += d.bytes();
    return n;
}

StreamingSafetensorsWriter::StreamingSafetensorsWriter(const std::string& path, std::vector<TensorDecl> decls,
                                                       const std::map<std::string, std::string>& metadata)
    : path_(path), decls_(std::move(decls)) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0)
        throw Error("E_IO", HQ_MSG("cannot create " << path << ": " << std::strerror(errno)), Where{path, "", "", -1, -1},
                    "check that the output folder is writable and the disk is not full");
    const std::string h = header_json(decls_, metadata);
    uint8_t len[8];
    const uint64_t n = h.size();
    for (int i = 0; i < 8; i++) len[i] = uint8_t(n >> (8 * i));
    raw(len, 8, "__header__");
    raw(h.data(), h.size(), "__header__");
}

StreamingSafetensorsWriter::~StreamingSafetensorsWriter() {
    try {
        wait_pending();
    } catch (...) {
    }
    if (fd_ >= 0) ::close(fd_);
}

void StreamingSafetensorsWriter::wait_pending() {
    if (pending_.valid()) pending_.get();   // rethrows the background write's error
}

void StreamingSafetensorsWriter::raw(const void* p, size_t n, const std::string& tensor) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
        const ssize_t w = ::write(fd_, c, std::min(n, size_t(1) << 30));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            throw Error("E_IO", HQ_MSG("writing " << path_ << " (tensor " << tensor << ") failed: "
                                                  << (w < 0 ? std::strerror(errno) : "no progress")),
                        Where{path_, tensor, "", int64_t(total_), -1},
                        errno == ENOSPC ? "the disk is full: free space or choose another --out"
                                        : "check the output folder and the disk");
        c += w;
        n -= size_t(w);
        total_ += uint64_t(w);
    }
}

// Every write call must deliver the next declared tensor, whole: waits for the previous background write first.
void StreamingSafetensorsWriter::expect_next(const std::string& name, size_t bytes) {
    wait_pending();
    HQ_ASSERT(fd_ >= 0);
    HQ_ASSERT(next_ < decls_.size());
    const TensorDecl& d = decls_[next_];
    HQ_CHECK(d.name == name && d.bytes() == bytes, "E_INTERNAL",
             "streaming writer for " << path_ << ": expected tensor " << d.name << " (" << d.bytes() << " bytes), got "
                                     << name << " (" << bytes << " bytes)",
             (Where{path_, name, "", -1, -1}), "please report this as a bug");
}

void StreamingSafetensorsWriter::write(const std::string& name, const void* data, size_t bytes) {
    expect_next(name, bytes);
    raw(data, bytes, name);
    next_++;
}

void StreamingSafetensorsWriter::write_chunked(const std::string& name, const uint8_t* data, size_t bytes,
                                               const std::function<void(const uint8_t*, size_t)>& after_chunk) {
    expect_next(name, bytes);
    const size_t chunk = size_t(64) << 20;
    for (size_t o = 0; o < bytes; o += chunk) {
        const size_t n = std::min(chunk, bytes - o);
        raw(data + o, n, name);
        if (after_chunk) after_chunk(data + o, n);
    }
    next_++;
}

void StreamingSafetensorsWriter::write_f32(const std::string& name, const float* data, size_t numel) {
    HQ_ASSERT(next_ < decls_.size());
    const DType dt = decls_[next_].dtype;
    if (dt == DType::F32) return write(name, data, numel * 4);
    HQ_CHECK(dt == DType::BF16 || dt == DType::F16, "E_INTERNAL", "cannot convert fp32 to " << dtype_name(dt),
             (Where{path_, name, "", -1, -1}), "");
    expect_next(name, numel * 2);
    pend_buf_.resize(numel);
    uint16_t* out = pend_buf_.data();
    const int64_t n = int64_t(numel);
    if (dt == DType::BF16) {
#pragma omp parallel for schedule(static) if (n >= (int64_t(1) << 15))
        for (int64_t i = 0; i < n; i++) out[i] = bf16_rne(data[i]);
    } else {
#pragma omp parallel for schedule(static) if (n >= (int64_t(1) << 15))
        for (int64_t i = 0; i < n; i++) out[i] = f32_to_f16(data[i]);
    }
    next_++;
    pending_ = std::async(std::launch::async, [this, name]() {
        const uint64_t at = total_;
        raw(pend_buf_.data(), pend_buf_.size() * 2, name);
#ifdef __linux__
        // Start the writeback of these bytes now (non-blocking), so that it overlaps the next tensors' work instead
        // of piling up for finish()'s fsync.
        ::sync_file_range(fd_, off64_t(at), off64_t(total_ - at), SYNC_FILE_RANGE_WRITE);
#endif
    });
}

void StreamingSafetensorsWriter::finish() {
    wait_pending();
    HQ_CHECK(next_ == decls_.size(), "E_INTERNAL",
             path_ << ": " << decls_.size() - next_ << " declared tensors were not written", (Where{path_, "", "", -1, -1}),
             "please report this as a bug");
    if (::fsync(fd_) != 0)
        throw Error("E_IO", HQ_MSG("fsync " << path_ << ": " << std::strerror(errno)), Where{path_, "", "", -1, -1},
                    "check the disk");
    if (::close(fd_) != 0) {
        fd_ = -1;
        throw Error("E_IO", HQ_MSG("close " << path_ << ": " << std::strerror(errno)), Where{path_, "", "", -1, -1},
                    "check the disk");
    }
    fd_ = -1;
}

}  // namespace hq
