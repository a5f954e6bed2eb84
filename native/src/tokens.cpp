// tokens.cpp — .hqtok reader/writer and the deterministic batcher.
#include "tokens.h"

#include <algorithm>
#include <cstring>

#include "error.h"
#include "fsutil.h"
#include "le_bytes.h"

namespace hq {

namespace {

const char* kTokHint = "re-create the token file (the extension's data preparation step writes it)";

using le::rd_u32;
using le::rd_u64;
using le::round8;
using le::frame_rows;

[[noreturn]] void fail(const std::string& path, int64_t offset, const std::string& msg,
                       const std::string& hint = kTokHint) {
    Where w;
    w.file = path;
    w.offset = offset;
    throw Error("E_TOKENS", HQ_MSG(path << ": " << msg << " (byte offset " << offset << ")"), w, hint);
}

// Integer header field; absent/null gives `dflt` when `required` is false.
int64_t header_int(const std::string& path, const nlohmann::json& h, const char* key, bool required,
                   int64_t dflt) {
    auto it = h.find(key);
    if (it == h.end() || it->is_null()) {
        if (required) fail(path, 16, HQ_MSG("header JSON has no integer field \"" << key << "\""));
        return dflt;
    }
    if (!it->is_number_integer())
        fail(path, 16, HQ_MSG("header field \"" << key << "\" must be an integer, got " << it->dump()));
    return it->get<int64_t>();
}

// Example index containing token position `pos` (offsets are validated non-decreasing).
int64_t example_of(const std::vector<uint64_t>& offsets, uint64_t pos) {
    auto it = std::upper_bound(offsets.begin(), offsets.end(), pos);
    return static_cast<int64_t>(it - offsets.begin()) - 1;
}

// Version 2: the document offsets at `at` (first 0, last n_tokens, non-decreasing, every example offset among
// them, so no document spans two examples).
void read_documents(TokenFile& f, const std::string& b, uint64_t at, uint64_t n_docs) {
    f.documents.resize(n_docs + 1);
    size_t ex = 0;   // next example offset to find among the document offsets
    for (uint64_t i = 0; i <= n_docs; ++i) {
        const uint64_t o = rd_u64(b, at + 8 * i);
        const int64_t where = static_cast<int64_t>(at + 8 * i);
        if (i == 0 && o != 0) fail(f.path, where, HQ_MSG("first document offset is " << o << ", must be 0"));
        if (i > 0 && o < f.documents[i - 1])
            fail(f.path, where, HQ_MSG("document offsets decrease at document " << (i - 1) << " (" << f.documents[i - 1]
                                       << " -> " << o << ")"));
        if (ex < f.offsets.size() && f.offsets[ex] < o)
            fail(f.path, where, HQ_MSG("example " << ex << " starts at token " << f.offsets[ex]
                                       << ", which is no document start (document " << i << " starts at " << o
                                       << "): a document spans two examples"));
        while (ex < f.offsets.size() && f.offsets[ex] == o) ++ex;
        f.documents[i] = o;
    }
    if (f.documents[n_docs] != static_cast<uint64_t>(f.n_tokens))
        fail(f.path, static_cast<int64_t>(at + 8 * n_docs),
             HQ_MSG("last document offset is " << f.documents[n_docs] << ", must equal n_tokens=" << f.n_tokens));
}

uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

}  // namespace

int64_t TokenFile::targets(int64_t i, int64_t max_len) const {
    int64_t len = length(i);
    if (max_len > 0) len = std::min(len, max_len);
    int64_t n = 0;
    for (int64_t t = 1; t < len; ++t) n += mask[offsets[i] + t];
    if (packed) {
        // The first token of every later document is not predicted either.
        auto d = std::upper_bound(documents.begin(), documents.end(), offsets[i]);
        for (; d != documents.end() && *d < offsets[i] + static_cast<uint64_t>(len); ++d)
            if (*d != *(d - 1)) n -= mask[*d];   // once per offset (empty documents repeat it)
    }
    return n;
}

void TokenFile::segments(int64_t i, int64_t len, int32_t* seg) const {
    const uint64_t o = offsets[i];
    int32_t doc = 0;
    auto d = packed ? std::upper_bound(documents.begin(), documents.end(), o) : documents.end();
    for (int64_t t = 0; t < len; ++t) {
        const uint64_t at = o + static_cast<uint64_t>(t);
        if (d != documents.end() && *d == at) {   // a document starts here (t > 0, as *d > o)
            ++doc;
            while (d != documents.end() && *d == at) ++d;   // empty documents repeat the offset
        }
        seg[t] = doc;
    }
}

int64_t TokenFile::total_targets(int64_t max_len) const {
    int64_t n = 0;
    for (int64_t i = 0; i < n_examples; ++i) n += targets(i, max_len);
    return n;
}

TokenFile read_token_file(const std::string& path, int64_t model_vocab_size) {
    TokenFile f;
    f.path = path;
    const std::string b = read_file(path);
    const uint64_t size = b.size();
    if (size < 16) fail(path, static_cast<int64_t>(size), HQ_MSG("file is " << size << " bytes, shorter than the 16-byte preamble"));
    if (std::memcmp(b.data(), kHqtokMagic, 8) != 0)
        fail(path, 0, "bad magic: not an .hqtok token file (expected bytes 48 51 54 4F 4B 00 00 01)");
    const uint32_t version = rd_u32(b, 8);
    if (version != 1 && version != 2)
        fail(path, 8, HQ_MSG("unsupported format version " << version << " (this trainer reads versions 1 and 2)"),
             "re-create the token file with this version of the extension");
    f.packed = version == 2;
    uint64_t H = rd_u32(b, 12);
    if (16 + H > size)
        fail(path, 12, HQ_MSG("header length " << H << " runs past the end of the " << size << "-byte file"));
    try {
        f.header = nlohmann::json::parse(b.begin() + 16, b.begin() + 16 + static_cast<int64_t>(H));
    } catch (const nlohmann::json::parse_error& e) {
        fail(path, 16 + static_cast<int64_t>(e.byte > 0 ? e.byte - 1 : 0),
             HQ_MSG("header is not valid JSON: " << e.what()));
    }
    const nlohmann::json& h = f.header;
    if (!h.is_object()) fail(path, 16, "header JSON is not an object");
    if (!h.contains("format") || h["format"] != "hqtok") fail(path, 16, "header field \"format\" is not \"hqtok\"");
    if (header_int(path, h, "version", true, 0) != version)
        fail(path, 16, HQ_MSG("header field \"version\" is not " << version << ", the file's format version"));
    const int64_t n_docs = f.packed ? header_int(path, h, "n_documents", true, 0) : 0;
    f.n_examples = header_int(path, h, "n_examples", true, 0);
    f.n_tokens = header_int(path, h, "n_tokens", true, 0);
    f.vocab_size = header_int(path, h, "vocab_size", true, 0);
    f.bos_id = header_int(path, h, "bos_id", false, -1);
    f.eos_id = header_int(path, h, "eos_id", false, -1);
    f.pad_id = header_int(path, h, "pad_id", false, -1);
    if (f.pad_id < 0) f.pad_id = f.eos_id >= 0 ? f.eos_id : 0;
    if (f.n_examples < 0 || f.n_tokens < 0 || f.vocab_size <= 0)
        fail(path, 16, HQ_MSG("header has n_examples=" << f.n_examples << ", n_tokens=" << f.n_tokens
                               << ", vocab_size=" << f.vocab_size << " (must be >= 0, >= 0, > 0)"));
    if (n_docs < 0 || n_docs >= (int64_t(1) << 40) || (f.packed && n_docs < f.n_examples))
        fail(path, 16, HQ_MSG("header field \"n_documents\" is " << n_docs << " (a packed file holds at least one document per example)"));
    if (f.n_tokens >= (int64_t(1) << 40) || f.n_examples >= (int64_t(1) << 40))
        fail(path, 16, "header declares an implausibly large n_tokens / n_examples");
    if (model_vocab_size > 0 && f.pad_id >= model_vocab_size)
        fail(path, 16, HQ_MSG("pad_id " << f.pad_id << " is not below the model's vocab_size " << model_vocab_size),
             "the token file was made with another tokenizer than the model's");

    const uint64_t P = round8(16 + H);
    for (uint64_t o = 16 + H; o < P && o < size; ++o)
        if (static_cast<uint8_t>(b[o]) != 0x20)
            fail(path, static_cast<int64_t>(o), "header padding byte is not 0x20 (space)");
    const uint64_t n_ex = static_cast<uint64_t>(f.n_examples), n_tok = static_cast<uint64_t>(f.n_tokens);
    const uint64_t off_start = P, ids_start = off_start + 8 * (n_ex + 1), mask_start = ids_start + 4 * n_tok;
    const uint64_t data_end = mask_start + n_tok, docs_start = round8(data_end);
    const uint64_t expected = docs_start + (f.packed ? 8 * (static_cast<uint64_t>(n_docs) + 1) : 0);
    if (size != expected)
        fail(path, static_cast<int64_t>(std::min<uint64_t>(size, expected)),
             HQ_MSG("file is " << size << " bytes but its header (n_examples=" << n_ex << ", n_tokens=" << n_tok
                               << (f.packed ? HQ_MSG(", n_documents=" << n_docs) : std::string())
                               << ") requires exactly " << expected << " bytes"
                               << (size < expected ? ": the file is truncated" : ": trailing bytes")));

    f.offsets.resize(n_ex + 1);
    for (uint64_t i = 0; i <= n_ex; ++i) {
        uint64_t o = rd_u64(b, off_start + 8 * i);
        int64_t at = static_cast<int64_t>(off_start + 8 * i);
        if (i == 0 && o != 0) fail(path, at, HQ_MSG("first example offset is " << o << ", must be 0"));
        if (o > n_tok)
            fail(path, at, HQ_MSG("offset of example " << i << " is " << o << ", beyond n_tokens=" << n_tok));
        if (i > 0 && o < f.offsets[i - 1])
            fail(path, at, HQ_MSG("offsets decrease at example " << (i - 1) << " (" << f.offsets[i - 1] << " -> " << o << ")"));
        f.offsets[i] = o;
    }
    if (f.offsets[n_ex] != n_tok)
        fail(path, static_cast<int64_t>(off_start + 8 * n_ex),
             HQ_MSG("last offset is " << f.offsets[n_ex] << ", must equal n_tokens=" << n_tok));

    f.ids.resize(n_tok);
    if (n_tok) std::memcpy(f.ids.data(), b.data() + ids_start, 4 * n_tok);
    const int64_t limit = model_vocab_size > 0 ? std::min(model_vocab_size, f.vocab_size) : f.vocab_size;
    for (uint64_t t = 0; t < n_tok; ++t) {
        if (static_cast<int64_t>(f.ids[t]) >= limit)
            fail(path, static_cast<int64_t>(ids_start + 4 * t),
                 HQ_MSG("token id " << f.ids[t] << " at position " << t << " of example " << example_of(f.offsets, t)
                                    << " is not below vocab_size " << limit
                                    << (limit == model_vocab_size && limit < f.vocab_size ? " (the model's)" : "")),
                 "the token file was made with another tokenizer than the model's; re-create it");
    }
    f.mask.assign(b.begin() + static_cast<int64_t>(mask_start), b.begin() + static_cast<int64_t>(data_end));
    for (uint64_t t = 0; t < n_tok; ++t)
        if (f.mask[t] > 1)
            fail(path, static_cast<int64_t>(mask_start + t),
                 HQ_MSG("loss-mask byte " << int(f.mask[t]) << " at position " << t << " of example "
                                          << example_of(f.offsets, t) << " is not 0 or 1"));
    for (uint64_t o = data_end; o < docs_start; ++o)
        if (b[o] != 0) fail(path, static_cast<int64_t>(o), "final padding byte is not zero");
    if (f.packed) read_documents(f, b, docs_start, static_cast<uint64_t>(n_docs));
    return f;
}

std::string encode_token_file(const std::vector<std::vector<uint32_t>>& examples,
                              const std::vector<std::vector<uint8_t>>& masks, nlohmann::json header,
                              const std::vector<std::vector<int64_t>>& documents) {
    HQ_ASSERT(examples.size() == masks.size());
    const bool packed = !documents.empty();
    HQ_ASSERT(!packed || documents.size() == examples.size());
    uint64_t n_tok = 0;
    for (size_t i = 0; i < examples.size(); ++i) {
        HQ_ASSERT(examples[i].size() == masks[i].size());
        n_tok += examples[i].size();
    }
    if (!header.is_object()) header = nlohmann::json::object();
    header["format"] = "hqtok";
    header["version"] = packed ? 2 : 1;
    header["n_examples"] = examples.size();
    header["n_tokens"] = n_tok;
    std::vector<uint64_t> doc_offsets = {0};
    for (size_t i = 0; i < documents.size(); ++i) {
        int64_t sum = 0;
        for (int64_t len : documents[i]) {
            sum += len;
            doc_offsets.push_back(doc_offsets.back() + static_cast<uint64_t>(len));
        }
        HQ_ASSERT(sum == static_cast<int64_t>(examples[i].size()));
    }
    if (packed) header["n_documents"] = doc_offsets.size() - 1;
    if (!header.contains("vocab_size")) {
        uint32_t mx = 0;
        for (const auto& e : examples)
            for (uint32_t id : e) mx = std::max(mx, id);
        header["vocab_size"] = mx + 1;
    }
    std::string b = frame_rows(kHqtokMagic, header.dump(), examples);
    if (packed) le::wr_u32_at(b, 8, 2);
    for (const auto& m : masks) b.append(reinterpret_cast<const char*>(m.data()), m.size());
    b.append(round8(b.size()) - b.size(), '\0');
    if (packed)
        for (uint64_t o : doc_offsets) le::wr_u64(b, o);
    return b;
}

nlohmann::json DataCursor::to_json() const {
    // seed as a decimal string: JSON numbers above 2^53 lose bits in JavaScript readers.
    return {{"epoch", epoch}, {"position", position}, {"seed", std::to_string(seed)}};
}

DataCursor DataCursor::from_json(const nlohmann::json& j) {
    DataCursor c;
    try {
        c.epoch = j.at("epoch").get<int64_t>();
        c.position = j.at("position").get<int64_t>();
        c.seed = std::stoull(j.at("seed").get<std::string>());
    } catch (const std::exception& e) {
        throw Error("E_CHECKPOINT", HQ_MSG("malformed data_cursor " << j.dump() << ": " << e.what()), Where{},
                    "the checkpoint's state.json is damaged; delete that checkpoint folder to resume from an older one");
    }
    return c;
}

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
    std::vector<int64_t> p(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) p[i] = i;
    uint64_t state = seed ^ (0xD1B54A32D192ED03ull * static_cast<uint64_t>(epoch + 1));
    for (int64_t i = n - 1; i > 0; --i) {
        // Multiply-shift range reduction (Lemire); 128-bit product keeps it platform-exact.
        uint64_t r = splitmix64(state);
        int64_t j = static_cast<int64_t>((static_cast<unsigned __int128>(r) * static_cast<uint64_t>(i + 1)) >> 64);
        std::swap(p[i], p[j]);
    }
    return p;
}

MicroBatch make_micro_batch(const TokenFile& f, const std::vector<int64_t>& examples, int64_t max_len) {
    MicroBatch mb;
    mb.B = static_cast<int>(examples.size());
    mb.examples = examples;
    int64_t T = 1;
    for (int64_t e : examples) {
        int64_t len = f.length(e);
        if (max_len > 0) len = std::min(len, max_len);
        T = std::max(T, len);
    }
    mb.T = static_cast<int>(T);
    mb.ids.assign(static_cast<size_t>(mb.B * T), static_cast<int32_t>(f.pad_id));
    mb.labels.assign(static_cast<size_t>(mb.B * T), kIgnoreLabel);
    if (f.packed) mb.seg.assign(static_cast<size_t>(mb.B * T), 0);
    for (int b = 0; b < mb.B; ++b) {
        int64_t e = examples[b], len = f.length(e);
        if (max_len > 0) len = std::min(len, max_len);
        const uint64_t o = f.offsets[e];
        int32_t* seg = f.packed ? mb.seg.data() + b * T : nullptr;   // [T] this row's documents
        if (seg) {
            f.segments(e, len, seg);
            for (int64_t t = len; t < T; ++t) seg[t] = (len ? seg[len - 1] : 0) + 1;   // padding: a document of its own
        }
        for (int64_t t = 0; t < len; ++t) {
            mb.ids[b * T + t] = static_cast<int32_t>(f.ids[o + t]);
            // A document's first token is predicted by no one (as position 0 of an unpacked row): the token before
            // it ends another document.
            const bool doc_start = seg && t > 0 && seg[t] != seg[t - 1];
            if (f.mask[o + t] && !doc_start) {
                mb.labels[b * T + t] = static_cast<int32_t>(f.ids[o + t]);
                if (t >= 1) ++mb.n_targets;
            }
        }
        mb.n_real_tokens += len;
    }
    return mb;
}

Batcher::Batcher(const TokenFile& file, int micro_batch_size, int64_t max_len, bool shuffle, uint64_t seed)
    : file_(file), micro_batch_(micro_batch_size), max_len_(max_len), shuffle_(shuffle) {
    HQ_CHECK(file.n_examples > 0, "E_TOKENS", file.path << ": the token file has no examples", (Where{file.path, "", "", -1, -1}),
             "check the dataset and the data preparation settings");
    HQ_ASSERT(micro_batch_size >= 1);
    cursor_.seed = seed;
}

void Batcher::load_epoch() {
    if (perm_epoch_ == cursor_.epoch) return;
    if (shuffle_) {
        perm_ = epoch_permutation(file_.n_examples, cursor_.seed, cursor_.epoch);
    } else {
        perm_.resize(static_cast<size_t>(file_.n_examples));
        for (int64_t i = 0; i < file_.n_examples; ++i) perm_[i] = i;
    }
    perm_epoch_ = cursor_.epoch;
}

MicroBatch Batcher::next() {
    std::vector<int64_t> ex;
    ex.reserve(static_cast<size_t>(micro_batch_));
    while (static_cast<int>(ex.size()) < micro_batch_) {
        load_epoch();
        ex.push_back(perm_[cursor_.position]);
        if (++cursor_.position == file_.n_examples) {
            cursor_.position = 0;
            ++cursor_.epoch;
        }
    }
    return make_micro_batch(file_, ex, max_len_);
}

void Batcher::restore(const DataCursor& c) {
    HQ_CHECK(c.epoch >= 0 && c.position >= 0 && c.position < file_.n_examples, "E_CHECKPOINT",
             "saved data cursor (epoch " << c.epoch << ", position " << c.position << ") does not fit "
                                         << file_.path << " with " << file_.n_examples << " examples",
             (Where{file_.path, "", "", -1, -1}), "the training token file changed since the checkpoint; start a new run");
    cursor_ = c;
    perm_epoch_ = -1;
}

double Batcher::epoch_progress() const {
    return static_cast<double>(cursor_.epoch) +
           static_cast<double>(cursor_.position) / static_cast<double>(file_.n_examples);
}

}  // namespace hq
