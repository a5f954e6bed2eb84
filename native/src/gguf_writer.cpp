// gguf_writer.cpp — GGUF v3 streaming writer (see gguf_writer.h for the layout).
#include "gguf_writer.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

#include "dtype.h"
#include "error.h"

namespace hq {

namespace {
constexpr uint32_t kGgufMagic = 0x46554747;   // "GGUF" read as a little-endian u32
constexpr uint32_t kGgufVersion = 3;
constexpr int kQ8Block = 32;                  // QK8_0
constexpr size_t kBufBytes = size_t(8) << 20;

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }
}  // namespace

bool ggml_type_from_name(const std::string& s, GgmlType* out) {
    if (s == "f32") *out = GgmlType::F32;
    else if (s == "f16") *out = GgmlType::F16;
    else if (s == "bf16") *out = GgmlType::BF16;
    else if (s == "q8_0") *out = GgmlType::Q8_0;
    else return false;
    return true;
}

const char* ggml_type_name(GgmlType t) {
    switch (t) {
        case GgmlType::F32: return "f32";
        case GgmlType::F16: return "f16";
        case GgmlType::BF16: return "bf16";
        case GgmlType::Q8_0: return "q8_0";
    }
    return "?";
}

uint64_t ggml_type_bytes(GgmlType t, int64_t n) {
    switch (t) {
        case GgmlType::F32: return uint64_t(n) * 4;
        case GgmlType::F16:
        case GgmlType::BF16: return uint64_t(n) * 2;
        case GgmlType::Q8_0: return uint64_t(n / kQ8Block) * (2 + kQ8Block);
    }
    return 0;
}

uint32_t llama_file_type(GgmlType t) {
    switch (t) {
        case GgmlType::F32: return 0;
        case GgmlType::F16: return 1;
        case GgmlType::Q8_0: return 7;
        case GgmlType::BF16: return 32;
    }
    return 0;
}

void quantize_q8_0(const float* x, int64_t n, uint8_t* out) {
    const int64_t nb = n / kQ8Block;
#pragma omp parallel for schedule(static) if (nb >= 4096)
    for (int64_t b = 0; b < nb; b++) {
        const float* xb = x + b * kQ8Block;
        float amax = 0.0f;
        for (int j = 0; j < kQ8Block; j++) amax = std::max(amax, std::fabs(xb[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint8_t* ob = out + b * (2 + kQ8Block);
        const uint16_t dh = f32_to_f16(d);
        std::memcpy(ob, &dh, 2);
        for (int j = 0; j < kQ8Block; j++) ob[2 + j] = uint8_t(int8_t(std::round(xb[j] * id)));
    }
}

GgufWriter::GgufWriter(std::string path, uint32_t alignment) : path_(std::move(path)), align_(alignment) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0)
        throw Error("E_IO", HQ_MSG("cannot create " << path_ << ": " << std::strerror(errno)), Where{path_, "", "", -1, -1},
                    "check that the output folder is writable");
    if (alignment != 32) add_u32("general.alignment", alignment);
}

GgufWriter::~GgufWriter() {
    if (fd_ >= 0) ::close(fd_);
}

bool GgufWriter::has_key(const std::string& k) const { return std::find(keys_.begin(), keys_.end(), k) != keys_.end(); }

void GgufWriter::key(const std::string& k, GgufValueType t) {
    HQ_ASSERT(!begun_);
    HQ_ASSERT(!has_key(k));
    keys_.push_back(k);
    const uint64_t n = k.size();
    kv_.append(reinterpret_cast<const char*>(&n), 8);
    kv_.append(k);
    const uint32_t tv = uint32_t(t);
    kv_.append(reinterpret_cast<const char*>(&tv), 4);
    n_kv_++;
}

void GgufWriter::add_u32(const std::string& k, uint32_t v) {
    key(k, GgufValueType::UINT32);
    kv_.append(reinterpret_cast<const char*>(&v), 4);
}
void GgufWriter::add_i32(const std::string& k, int32_t v) {
    key(k, GgufValueType::INT32);
    kv_.append(reinterpret_cast<const char*>(&v), 4);
}
void GgufWriter::add_f32(const std::string& k, float v) {
    key(k, GgufValueType::FLOAT32);
    kv_.append(reinterpret_cast<const char*>(&v), 4);
}
void GgufWriter::add_bool(const std::string& k, bool v) {
    key(k, GgufValueType::BOOL);
    kv_.push_back(v ? 1 : 0);
}
void GgufWriter::add_string(const std::string& k, const std::string& v) {
    key(k, GgufValueType::STRING);
    const uint64_t n = v.size();
    kv_.append(reinterpret_cast<const char*>(&n), 8);
    kv_.append(v);
}
void GgufWriter::add_strings(const std::string& k, const std::vector<std::string>& v) {
    key(k, GgufValueType::ARRAY);
    const uint32_t et = uint32_t(GgufValueType::STRING);
    const uint64_t n = v.size();
    kv_.append(reinterpret_cast<const char*>(&et), 4);
    kv_.append(reinterpret_cast<const char*>(&n), 8);
    for (const std::string& s : v) {
        const uint64_t m = s.size();
        kv_.append(reinterpret_cast<const char*>(&m), 8);
        kv_.append(s);
    }
}
void GgufWriter::add_f32s(const std::string& k, const std::vector<float>& v) {
    key(k, GgufValueType::ARRAY);
    const uint32_t et = uint32_t(GgufValueType::FLOAT32);
    const uint64_t n = v.size();
    kv_.append(reinterpret_cast<const char*>(&et), 4);
    kv_.append(reinterpret_cast<const char*>(&n), 8);
    kv_.append(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}
void GgufWriter::add_i32s(const std::string& k, const std::vector<int32_t>& v) {
    key(k, GgufValueType::ARRAY);
    const uint32_t et = uint32_t(GgufValueType::INT32);
    const uint64_t n = v.size();
    kv_.append(reinterpret_cast<const char*>(&et), 4);
    kv_.append(reinterpret_cast<const char*>(&n), 8);
    kv_.append(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

void GgufWriter::add_tensor(const std::string& name, const std::vector<int64_t>& shape, GgmlType type) {
    HQ_ASSERT(!begun_);
    for (const Tensor& t : tensors_) HQ_ASSERT(t.name != name);
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    if (type == GgmlType::Q8_0)
        HQ_CHECK(!shape.empty() && shape.back() % kQ8Block == 0, "E_CONFIG",
                 "tensor " << name << " has rows of " << (shape.empty() ? 0 : shape.back())
                           << " values, not a multiple of 32: q8_0 cannot store it",
                 (Where{path_, name, "type", -1, -1}), "export with --type f16 or f32");
    const uint64_t bytes = ggml_type_bytes(type, n);
    tensors_.push_back({name, shape, type, data_end_, bytes});
    data_end_ = align_up(data_end_ + bytes, align_);
}

void GgufWriter::put(const void* p, size_t n) {
    buf_.append(static_cast<const char*>(p), n);
    if (buf_.size() >= kBufBytes) flush();
}

void GgufWriter::put_str(const std::string& s) {
    put_u64(s.size());
    put(s.data(), s.size());
}

void GgufWriter::flush() {
    size_t off = 0;
    while (off < buf_.size()) {
        const ssize_t w = ::write(fd_, buf_.data() + off, buf_.size() - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            throw Error("E_IO", HQ_MSG("writing " << path_ << " failed: " << std::strerror(w < 0 ? errno : EIO)),
                        Where{path_, next_ < tensors_.size() ? tensors_[next_].name : "", "", -1, -1},
                        "check the free disk space of the output folder");
        off += size_t(w);
    }
    buf_.clear();
}

void GgufWriter::begin_data() {
    HQ_ASSERT(!begun_);
    begun_ = true;
    put_u32(kGgufMagic);
    put_u32(kGgufVersion);
    put_u64(tensors_.size());
    put_u64(n_kv_);
    put(kv_.data(), kv_.size());
    for (const Tensor& t : tensors_) {
        put_str(t.name);
        put_u32(uint32_t(t.shape.size()));
        for (size_t i = t.shape.size(); i-- > 0;) put_u64(uint64_t(t.shape[i]));   // ne[0] = innermost
        put_u32(uint32_t(t.type));
        put_u64(t.offset);
    }
    uint64_t pos = 24 + kv_.size();
    for (const Tensor& t : tensors_) pos += 8 + t.name.size() + 4 + 8 * t.shape.size() + 4 + 8;
    const std::string pad(size_t(align_up(pos, align_) - pos), '\0');
    put(pad.data(), pad.size());
}

void GgufWriter::write_tensor_f32(const std::string& name, const float* data, int64_t numel) {
    HQ_ASSERT(begun_ && !finished_);
    HQ_ASSERT(next_ < tensors_.size());
    const Tensor& t = tensors_[next_];
    HQ_ASSERT(t.name == name);
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    HQ_ASSERT(n == numel);
    const uint8_t* bytes = reinterpret_cast<const uint8_t*>(data);
    if (t.type != GgmlType::F32) {
        conv_.resize(size_t(t.bytes));
        if (t.type == GgmlType::Q8_0) {
            quantize_q8_0(data, n, conv_.data());
        } else {
            uint16_t* o = reinterpret_cast<uint16_t*>(conv_.data());
            const bool bf = t.type == GgmlType::BF16;
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
            for (int64_t i = 0; i < n; i++) o[i] = bf ? f32_to_bf16(data[i]) : f32_to_f16(data[i]);
        }
        bytes = conv_.data();
    }
    put(bytes, size_t(t.bytes));
    const uint64_t end = next_ + 1 < tensors_.size() ? tensors_[next_ + 1].offset : data_end_;
    const std::string pad(size_t(end - t.offset - t.bytes), '\0');
    put(pad.data(), pad.size());
    next_++;
}

void GgufWriter::finish() {
    HQ_ASSERT(begun_ && !finished_);
    HQ_CHECK(next_ == tensors_.size(), "E_INTERNAL",
             path_ << ": " << tensors_.size() - next_ << " declared tensors were not written", (Where{path_, "", "", -1, -1}),
             "please report this as a bug");
    flush();
    if (::fsync(fd_) != 0)
        throw Error("E_IO", HQ_MSG("fsync of " << path_ << " failed: " << std::strerror(errno)), Where{path_, "", "", -1, -1},
                    "check the disk");
    ::close(fd_);
    fd_ = -1;
    finished_ = true;
}

}  // namespace hq
