// safetensors.cpp — validating reader (mmap), atomic writer, and model-folder loader (see safetensors.h).
//
// Validation mirrors safetensors@24b0b285 `read_metadata` + `Metadata::validate` (reliability-anchors §4.2):
//   len < 8                          -> "header too small"
//   N > 100,000,000                  -> "header too large"
//   N + 8 > len                      -> "invalid header length"
//   header not UTF-8                 -> "header is not valid UTF-8"
//   not JSON / wrong field shapes    -> "invalid header JSON" (unknown dtype, non-string metadata, ...)
//   sorted by data_offsets: BEGIN != previous END, or END < BEGIN -> "invalid offset"
//   prod(shape) * bits overflows     -> "overflow";  bits % 8 != 0 -> "misaligned slice"
//   END - BEGIN != bytes             -> "tensor info mismatch"
//   last END + 8 + N != len          -> "buffer not fully covered" (trailing or missing bytes)
// Deliberate differences: duplicate names (any object level) are rejected (README: "disallowed"); a shape
// dimension above 2^63-1 is rejected as overflow even when another dimension is 0.
#include "safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "error.h"

#include "fsutil.h"

namespace hq {

using nlohmann::json;

int64_t TensorInfo::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

namespace {

const char* kHintCorrupt =
    "the file is not a valid safetensors file (truncated download or corrupted copy?); re-download it or "
    "re-save it with safetensors.torch.save_file / save_pretrained(safe_serialization=True)";

// Strict UTF-8 validation (no overlongs, no surrogates, max U+10FFFF). Returns the index of the first bad byte
// or -1 when valid.
int64_t utf8_invalid_at(const uint8_t* s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return int64_t(i);
        }
        if (i + len > n) return int64_t(i);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return int64_t(i);
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return int64_t(i);
        i += len;
    }
    return -1;
}

// Up to 3 names most similar to `want` (longest common prefix + suffix), for "did you mean" hints.
std::string similar_names(const std::string& want, const std::vector<std::string>& names) {
    std::vector<std::pair<size_t, std::string>> scored;
    for (const auto& n : names) {
        size_t p = 0, s = 0;
        while (p < n.size() && p < want.size() && n[p] == want[p]) p++;
        while (s < n.size() && s < want.size() && n[n.size() - 1 - s] == want[want.size() - 1 - s]) s++;
        scored.push_back({p + s, n});
    }
    std::stable_sort(scored.begin(), scored.end(), [](auto& a, auto& b) { return a.first > b.first; });
    std::string out;
    for (size_t i = 0; i < scored.size() && i < 3; i++) out += (i ? ", " : "") + scored[i].second;
    return out;
}

// out[i] = widen(element i of src), the elements `sizeof(Elem)` bytes each and read unaligned.
template <class Elem, class Widen>
void widen_elements(const uint8_t* src, int64_t N, bool par, float* out, Widen widen) {
#pragma omp parallel for schedule(static) if (par)
    for (int64_t i = 0; i < N; i++) {
        Elem e;
        std::memcpy(&e, src + sizeof(Elem) * i, sizeof(Elem));
        out[i] = widen(e);
    }
}

// Element-wise and independent, so large tensors are converted by all OpenMP threads (the first touch of the mapped
// file's pages then happens in parallel too); the values do not depend on the thread count.
void convert_to_f32(const uint8_t* src, DType dt, size_t n, float* out) {
    if (n == 0) return;  // empty tensor: `out` may be null (empty vector)
    const int64_t N = int64_t(n);
    const bool par = N >= (int64_t(1) << 20);
    switch (dt) {
        case DType::F32: {
            const int64_t chunk = int64_t(1) << 18;
#pragma omp parallel for schedule(static) if (par)
            for (int64_t c = 0; c < (N + chunk - 1) / chunk; c++)
                std::memcpy(out + c * chunk, src + 4 * c * chunk, size_t(std::min(chunk, N - c * chunk)) * 4);
            break;
        }
        case DType::F16: widen_elements<uint16_t>(src, N, par, out, [](uint16_t h) { return f16_to_f32(h); }); break;
        case DType::BF16: widen_elements<uint16_t>(src, N, par, out, [](uint16_t h) { return bf16_to_f32(h); }); break;
        case DType::F64: widen_elements<double>(src, N, par, out, [](double d) { return float(d); }); break;
        default:
            HQ_ASSERT(false);
    }
}

[[noreturn]] void throw_tensor_not_found(const std::string& path, const std::string& name,
                                         const std::vector<TensorInfo>& tensors) {
    std::vector<std::string> names;
    for (const auto& x : tensors) names.push_back(x.name);
    throw Error("E_SAFETENSORS", HQ_MSG(path << ": tensor '" << name << "' not found"), Where{path, name, "", -1, -1},
                HQ_MSG("check the model architecture / tensor names; similar names: " << similar_names(name, names)));
}

bool is_float_readable(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::F64; }

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Reader

SafeTensorsFile::~SafeTensorsFile() {
    if (map_) ::munmap(map_, map_len_);
}

std::unique_ptr<SafeTensorsFile> SafeTensorsFile::open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        throw Error("E_IO", HQ_MSG("cannot open safetensors file '" << path << "': " << std::strerror(errno)),
                    Where{path, "", "", -1, -1}, "check that the file exists and is readable");
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw Error("E_IO", HQ_MSG("'" << path << "' is not a regular file"), Where{path, "", "", -1, -1},
                    "pass a .safetensors file or a model folder");
    }
    std::unique_ptr<SafeTensorsFile> f(new SafeTensorsFile());
    f->path_ = path;
    f->size_ = size_t(st.st_size);
    if (f->size_ > 0) {
        void* m = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int err = errno;
            ::close(fd);
            throw Error("E_IO", HQ_MSG("cannot mmap '" << path << "': " << std::strerror(err)),
                        Where{path, "", "", -1, -1}, "check free address space / file permissions");
        }
        f->map_ = m;
        f->map_len_ = f->size_;
        f->base_ = static_cast<const uint8_t*>(m);
    }
    ::close(fd);
    f->parse();
    return f;
}

std::unique_ptr<SafeTensorsFile> SafeTensorsFile::from_memory(const uint8_t* data, size_t size, std::string name) {
    std::unique_ptr<SafeTensorsFile> f(new SafeTensorsFile());
    f->path_ = std::move(name);
    f->base_ = data;
    f->size_ = size;
    f->parse();
    return f;
}

void SafeTensorsFile::parse() {
    const std::string& file = path_;
    auto fail = [&](const std::string& msg, const std::string& tensor, int64_t offset) {
        throw Error("E_SAFETENSORS", HQ_MSG(file << ": " << msg), Where{file, tensor, "", offset, -1}, kHintCorrupt);
    };
    if (size_ < 8) fail(HQ_MSG("header too small: file has " << size_ << " bytes, at least 8 are needed"), "", 0);
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= uint64_t(base_[i]) << (8 * i);
    if (n > kSafetensorsMaxHeader)
        fail(HQ_MSG("header too large: " << n << " bytes > limit " << kSafetensorsMaxHeader), "", 0);
    if (n + 8 > size_)
        fail(HQ_MSG("invalid header length: header claims " << n << " bytes but the file has only " << size_),
             "", 0);
    header_size_ = n;
    const uint8_t* h = base_ + 8;
    int64_t bad = utf8_invalid_at(h, size_t(n));
    if (bad >= 0) fail(HQ_MSG("header is not valid UTF-8 at byte " << (8 + bad)), "", 8 + bad);

    // JSON never contains a raw NUL (control characters must be escaped inside strings), but nlohmann's lexer
    // stops at one as if the input ended, which would accept "{...}\0garbage". Reject it like serde_json does.
    if (const void* z = std::memchr(h, 0, size_t(n)))
        fail("invalid header JSON: NUL byte in header", "", int64_t(8 + (static_cast<const uint8_t*>(z) - h)));

    // Parse with a callback that rejects duplicate keys at every object level (nlohmann would keep the last).
    std::vector<std::set<std::string>> keys;
    std::string dup;
    json::parser_callback_t cb = [&](int /*depth*/, json::parse_event_t ev, json& parsed) {
        if (ev == json::parse_event_t::object_start) {
            keys.emplace_back();
        } else if (ev == json::parse_event_t::object_end) {
            if (!keys.empty()) keys.pop_back();
        } else if (ev == json::parse_event_t::key && !keys.empty()) {
            const std::string& k = parsed.get_ref<const std::string&>();
            if (!keys.back().insert(k).second && dup.empty()) dup = k;
        }
        return true;
    };
    json j;
    try {
        j = json::parse(h, h + n, cb, /*allow_exceptions=*/true, /*ignore_comments=*/false);
    } catch (const json::parse_error& e) {
        fail(HQ_MSG("invalid header JSON: " << e.what()), "", int64_t(8 + (e.byte > 0 ? e.byte - 1 : 0)));
    }
    if (!dup.empty()) fail(HQ_MSG("duplicate key '" << dup << "' in header"), dup, 8);
    if (!j.is_object()) fail("invalid header JSON: the header must be a JSON object", "", 8);

    tensors_.clear();
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& name = it.key();
        const json& v = it.value();
        if (name == "__metadata__") {
            if (v.is_null()) continue;
            if (!v.is_object()) fail("invalid header JSON: __metadata__ must be an object of strings", name, 8);
            for (auto m = v.begin(); m != v.end(); ++m) {
                if (!m.value().is_string())
                    fail(HQ_MSG("invalid header JSON: __metadata__ value of '" << m.key()
                                                                                << "' is not a string"),
                         "__metadata__", 8);
                metadata_[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        if (!v.is_object()) fail(HQ_MSG("invalid header JSON: entry '" << name << "' is not an object"), name, 8);
        auto dt_it = v.find("dtype");
        auto sh_it = v.find("shape");
        auto of_it = v.find("data_offsets");
        if (dt_it == v.end() || sh_it == v.end() || of_it == v.end())
            fail(HQ_MSG("invalid header JSON: tensor '" << name << "' needs dtype, shape and data_offsets"), name, 8);
        TensorInfo t;
        t.name = name;
        if (!dt_it->is_string() || !dtype_from_string(dt_it->get<std::string>(), &t.dtype))
            fail(HQ_MSG("invalid header JSON: tensor '" << name << "' has unknown dtype " << dt_it->dump()), name, 8);
        if (!sh_it->is_array()) fail(HQ_MSG("invalid header JSON: shape of '" << name << "' is not a list"), name, 8);
        for (const auto& d : *sh_it) {
            if (!d.is_number_unsigned())
                fail(HQ_MSG("invalid header JSON: shape of '" << name << "' has a non-integer or negative entry "
                                                               << d.dump()),
                     name, 8);
            uint64_t u = d.get<uint64_t>();
            if (u > uint64_t(INT64_MAX)) fail(HQ_MSG("overflow: shape dimension " << u << " of '" << name << "'"), name, 8);
            t.shape.push_back(int64_t(u));
        }
        if (!of_it->is_array() || of_it->size() != 2 || !(*of_it)[0].is_number_unsigned() ||
            !(*of_it)[1].is_number_unsigned())
            fail(HQ_MSG("invalid header JSON: data_offsets of '" << name << "' must be [BEGIN, END] non-negative integers"),
                 name, 8);
        t.begin = (*of_it)[0].get<uint64_t>();
        t.end = (*of_it)[1].get<uint64_t>();
        tensors_.push_back(std::move(t));
    }

    std::stable_sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    const int64_t data0 = int64_t(8 + n);
    uint64_t start = 0;
    for (const auto& t : tensors_) {
        if (t.begin != start || t.end < t.begin)
            fail(HQ_MSG("invalid offset for tensor '" << t.name << "': data_offsets [" << t.begin << ", " << t.end
                                                      << "] but the previous tensor ends at " << start
                                                      << " (gap or overlap)"),
                 t.name, data0 + int64_t(std::min<uint64_t>(t.begin, uint64_t(INT64_MAX) - uint64_t(data0))));
        uint64_t elems = 1;
        for (int64_t d : t.shape)
            if (__builtin_mul_overflow(elems, uint64_t(d), &elems))
                fail(HQ_MSG("overflow: element count of '" << t.name << "' does not fit 64 bits"), t.name,
                     data0 + int64_t(t.begin));
        uint64_t bits;
        if (__builtin_mul_overflow(elems, uint64_t(dtype_bits(t.dtype)), &bits))
            fail(HQ_MSG("overflow: bit size of '" << t.name << "' does not fit 64 bits"), t.name,
                 data0 + int64_t(t.begin));
        if (bits % 8 != 0)
            fail(HQ_MSG("misaligned slice: tensor '" << t.name << "' has " << bits << " bits, not whole bytes"),
                 t.name, data0 + int64_t(t.begin));
        if (t.end - t.begin != bits / 8)
            fail(HQ_MSG("tensor info mismatch: '" << t.name << "' (" << dtype_name(t.dtype) << ", " << elems
                                                  << " elements) needs " << bits / 8 << " bytes but data_offsets ["
                                                  << t.begin << ", " << t.end << "] span " << (t.end - t.begin)),
                 t.name, data0 + int64_t(t.begin));
        start = t.end;
    }
    // start <= size_ is not yet known: compare without overflow.
    if (start > uint64_t(size_) || start + 8 + n != uint64_t(size_)) {
        std::string last = tensors_.empty() ? "" : tensors_.back().name;
        fail(HQ_MSG("buffer not fully covered: tensors end at byte " << (start > uint64_t(INT64_MAX) ? 0 : 8 + n + start)
                                                                     << " but the file has " << size_
                                                                     << " bytes (trailing or missing data)"),
             last, int64_t(std::min<uint64_t>(start, uint64_t(INT64_MAX) / 2) + 8 + n));
    }
    for (size_t i = 0; i < tensors_.size(); i++) index_[tensors_[i].name] = i;
}

const TensorInfo* SafeTensorsFile::find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
}

void SafeTensorsFile::convert_f32(const TensorInfo& t, float* out) const {
    if (!is_float_readable(t.dtype))
        throw Error("E_SAFETENSORS",
                    HQ_MSG(path_ << ": tensor '" << t.name << "' has dtype " << dtype_name(t.dtype)
                                 << ", expected F32, F16, BF16 or F64"),
                    Where{path_, t.name, "", int64_t(data_start() + t.begin), -1},
                    "H-QLoRA reads floating-point checkpoints; re-save the model in bf16/fp16/fp32 "
                    "(pre-quantized or fp8 checkpoints are not supported)");
    convert_to_f32(data(t), t.dtype, size_t(t.numel()), out);
}

std::vector<float> SafeTensorsFile::read_f32(const std::string& name) const {
    const TensorInfo* t = find(name);
    if (!t) throw_tensor_not_found(path_, name, tensors_);
    std::vector<float> out(size_t(t->numel()));
    convert_f32(*t, out.data());
    return out;
}

void SafeTensorsFile::read_f32_into(const std::string& name, float* out, size_t numel) const {
    const TensorInfo* t = find(name);
    if (!t) throw_tensor_not_found(path_, name, tensors_);
    if (size_t(t->numel()) != numel)
        throw Error("E_SHAPE",
                    HQ_MSG(path_ << ": tensor '" << name << "' has " << t->numel() << " elements, expected " << numel),
                    Where{path_, name, "", int64_t(data_start() + t->begin), -1},
                    "the checkpoint does not match config.json (wrong model folder or edited config?)");
    convert_f32(*t, out);
}

// ---------------------------------------------------------------------------------------------------------------
// Writer

void SafeTensorsWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data,
                            size_t bytes) {
    HQ_CHECK(name != "__metadata__", "E_INTERNAL", "tensor name __metadata__ is reserved", Where{}, "rename the tensor");
    for (const auto& e : entries_)
        HQ_CHECK(e.name != name, "E_INTERNAL", "duplicate tensor name '" << name << "' in safetensors writer",
                 (Where{"", name, "", -1, -1}), "tensor names must be unique");
    uint64_t elems = 1;
    for (int64_t d : shape) {
        HQ_CHECK(d >= 0, "E_SHAPE", "negative dimension in shape of '" << name << "'", (Where{"", name, "", -1, -1}),
                 "shapes must be non-negative");
        elems *= uint64_t(d);
    }
    uint64_t bits = elems * uint64_t(dtype_bits(dtype));
    HQ_CHECK(bits % 8 == 0 && bits / 8 == bytes, "E_SHAPE",
             "tensor '" << name << "': " << bytes << " bytes given, shape and dtype need " << bits / 8
                        << (bits % 8 ? " (+ a partial byte)" : ""),
             (Where{"", name, "", -1, -1}), "this is a bug in the caller");
    Entry e{name, dtype, std::move(shape), std::string(static_cast<const char*>(data), bytes)};
    entries_.push_back(std::move(e));
}

void SafeTensorsWriter::add_f32(const std::string& name, std::vector<int64_t> shape, const float* data) {
    size_t n = 1;
    for (int64_t d : shape) n *= size_t(d < 0 ? 0 : d);
    add(name, DType::F32, std::move(shape), data, n * sizeof(float));
}

void SafeTensorsWriter::set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

std::string SafeTensorsWriter::serialize() const {
    std::vector<const Entry*> order;
    for (const auto& e : entries_) order.push_back(&e);
    std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
        int aa = dtype_alignment(a->dtype), ab = dtype_alignment(b->dtype);
        return aa != ab ? aa > ab : a->name < b->name;
    });
    std::string hdr = "{";
    bool first = true;
    if (!metadata_.empty()) {
        hdr += "\"__metadata__\":{";
        bool f2 = true;
        for (const auto& kv : metadata_) {
            hdr += (f2 ? "" : ",") + json(kv.first).dump() + ":" + json(kv.second).dump();
            f2 = false;
        }
        hdr += "}";
        first = false;
    }
    uint64_t off = 0;
    for (const Entry* e : order) {
        std::string shape = "[";
        for (size_t i = 0; i < e->shape.size(); i++) shape += (i ? "," : "") + std::to_string(e->shape[i]);
        shape += "]";
        hdr += (first ? "" : ",") + json(e->name).dump() + ":{\"dtype\":\"" + dtype_name(e->dtype) +
               "\",\"shape\":" + shape + ",\"data_offsets\":[" + std::to_string(off) + "," +
               std::to_string(off + e->bytes.size()) + "]}";
        off += e->bytes.size();
        first = false;
    }
    hdr += "}";
    hdr.append((8 - hdr.size() % 8) % 8, ' ');
    HQ_CHECK(hdr.size() <= kSafetensorsMaxHeader, "E_SAFETENSORS", "header of " << hdr.size() << " bytes exceeds the limit",
             Where{}, "write fewer tensors per file");
    std::string out;
    out.reserve(8 + hdr.size() + off);
    uint64_t n = hdr.size();
    for (int i = 0; i < 8; i++) out.push_back(char((n >> (8 * i)) & 0xff));
    out += hdr;
    for (const Entry* e : order) out += e->bytes;
    return out;
}

void SafeTensorsWriter::write_atomic(const std::string& path) const { write_file_atomic(path, serialize()); }

// ---------------------------------------------------------------------------------------------------------------
// Model folder

ModelWeights ModelWeights::open_dir(const std::string& dir) {
    ModelWeights mw;
    mw.dir_ = dir;
    if (!is_directory(dir))
        throw Error("E_IO", HQ_MSG("model folder '" << dir << "' does not exist or is not a folder"),
                    Where{dir, "", "", -1, -1}, "set model.path to a Hugging Face model folder (config.json + *.safetensors)");
    std::string index = path_join(dir, "model.safetensors.index.json");
    std::string single = path_join(dir, "model.safetensors");
    auto add_file = [&](const std::string& path) -> size_t {
        mw.files_.push_back(SafeTensorsFile::open(path));
        return mw.files_.size() - 1;
    };
    if (path_exists(index)) {
        mw.index_path_ = index;
        json j;
        try {
            j = json::parse(read_file(index));
        } catch (const json::exception& e) {
            throw Error("E_SAFETENSORS", HQ_MSG(index << ": invalid JSON: " << e.what()), Where{index, "", "", -1, -1},
                        "re-download model.safetensors.index.json");
        }
        if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
            throw Error("E_SAFETENSORS", HQ_MSG(index << ": missing object 'weight_map'"),
                        Where{index, "", "weight_map", -1, -1}, "re-download model.safetensors.index.json");
        std::map<std::string, size_t> shard_idx;
        for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
            if (!it.value().is_string())
                throw Error("E_SAFETENSORS", HQ_MSG(index << ": weight_map entry '" << it.key() << "' is not a file name"),
                            Where{index, it.key(), "weight_map", -1, -1}, "re-download model.safetensors.index.json");
            std::string shard = it.value().get<std::string>();
            if (shard.find('/') != std::string::npos || shard == ".." || shard.empty())
                throw Error("E_SAFETENSORS", HQ_MSG(index << ": shard name '" << shard << "' must be a plain file name"),
                            Where{index, it.key(), "weight_map", -1, -1}, "re-download model.safetensors.index.json");
            auto s = shard_idx.find(shard);
            if (s == shard_idx.end()) {
                std::string sp = path_join(dir, shard);
                if (!path_exists(sp))
                    throw Error("E_SAFETENSORS",
                                HQ_MSG(index << ": shard '" << shard << "' (holding tensor '" << it.key()
                                             << "') does not exist"),
                                Where{index, it.key(), "weight_map", -1, -1},
                                "the download is incomplete; fetch every model-*.safetensors shard listed in the index");
                s = shard_idx.emplace(shard, add_file(sp)).first;
            }
            if (!mw.files_[s->second]->find(it.key()))
                throw Error("E_SAFETENSORS",
                            HQ_MSG(index << ": tensor '" << it.key() << "' is mapped to shard '" << shard
                                         << "' but that shard does not contain it"),
                            Where{index, it.key(), "weight_map", -1, -1},
                            "the index and the shards do not match; re-download the model");
            mw.where_[it.key()] = s->second;
        }
    } else if (path_exists(single)) {
        size_t k = add_file(single);
        for (const auto& t : mw.files_[k]->tensors()) mw.where_[t.name] = k;
    } else {
        std::vector<std::string> st;
        for (const auto& n : list_dir(dir))
            if (n.size() > 12 && n.compare(n.size() - 12, 12, ".safetensors") == 0 && n[0] != '.') st.push_back(n);
        if (st.empty())
            throw Error("E_SAFETENSORS", HQ_MSG("no .safetensors weights in model folder '" << dir << "'"),
                        Where{dir, "", "", -1, -1},
                        "convert the checkpoint with transformers: AutoModelForCausalLM.from_pretrained(...)"
                        ".save_pretrained(out_dir, safe_serialization=True)");
        for (const auto& n : st) {
            size_t k = add_file(path_join(dir, n));
            for (const auto& t : mw.files_[k]->tensors()) {
                if (mw.where_.count(t.name))
                    throw Error("E_SAFETENSORS", HQ_MSG("tensor '" << t.name << "' appears in more than one file of '" << dir << "'"),
                                Where{path_join(dir, n), t.name, "", -1, -1}, "remove stray .safetensors files from the model folder");
                mw.where_[t.name] = k;
            }
        }
    }
    return mw;
}

const TensorInfo* ModelWeights::find(const std::string& name, const SafeTensorsFile** file) const {
    auto it = where_.find(name);
    if (it == where_.end()) return nullptr;
    const SafeTensorsFile* f = files_[it->second].get();
    if (file) *file = f;
    return f->find(name);
}

std::vector<std::string> ModelWeights::names() const {
    std::vector<std::string> out;
    for (const auto& kv : where_) out.push_back(kv.first);
    return out;
}

namespace {

// The tensor `name` of the model folder and (*file) its shard, or E_SAFETENSORS naming the folder (its index when
// sharded) and similar names.
const TensorInfo& require_tensor(const ModelWeights& mw, const std::string& name, const SafeTensorsFile** file) {
    const TensorInfo* t = mw.find(name, file);
    if (!t)
        throw Error("E_SAFETENSORS", HQ_MSG("model folder '" << mw.dir() << "' has no tensor '" << name << "'"),
                    Where{mw.index_path().empty() ? mw.dir() : mw.index_path(), name, "", -1, -1},
                    HQ_MSG("check that the model architecture is supported; similar names: "
                           << similar_names(name, mw.names())));
    return *t;
}

}  // namespace

std::vector<float> ModelWeights::read_f32(const std::string& name) const {
    const SafeTensorsFile* f = nullptr;
    const TensorInfo& t = require_tensor(*this, name, &f);
    std::vector<float> out(size_t(t.numel()));
    f->convert_f32(t, out.data());
    return out;
}

void ModelWeights::read_f32_into(const std::string& name, float* out, size_t numel) const {
    const SafeTensorsFile* f = nullptr;
    require_tensor(*this, name, &f);
    f->read_f32_into(name, out, numel);
}

}  // namespace hq
