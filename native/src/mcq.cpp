// mcq.cpp — .hqmcq reader/writer and batched letter-logit scoring (see mcq.h).
#include "mcq.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>

#include "error.h"
#include "fsutil.h"
#include "le_bytes.h"

namespace hq {

namespace {

const char* kMcqHint = "re-create the question file with `hqlora eval` (it tokenizes the multiple-choice data)";

using le::rd_u32;
using le::rd_u64;
using le::round8;
using le::wr_u32;
using le::frame_rows;

[[noreturn]] void fail(const std::string& path, int64_t offset, const std::string& msg) {
    Where w;
    w.file = path;
    w.offset = offset;
    throw Error("E_MCQ", HQ_MSG(path << ": " << msg << " (byte offset " << offset << ")"), w, kMcqHint);
}

int64_t header_int(const std::string& path, const nlohmann::json& h, const char* key, int64_t lo) {
    auto it = h.find(key);
    if (it == h.end() || !it->is_number_integer())
        fail(path, 16, HQ_MSG("header field \"" << key << "\" is missing or not an integer"));
    const int64_t v = it->get<int64_t>();
    if (v < lo) fail(path, 16, HQ_MSG("header field \"" << key << "\" is " << v << ", below " << lo));
    return v;
}

std::vector<std::string> header_strings(const std::string& path, const nlohmann::json& h, const char* key) {
    auto it = h.find(key);
    if (it == h.end() || !it->is_array()) fail(path, 16, HQ_MSG("header field \"" << key << "\" is not a list"));
    std::vector<std::string> out;
    for (const auto& s : *it) {
        if (!s.is_string()) fail(path, 16, HQ_MSG("header field \"" << key << "\" has a non-string element"));
        out.push_back(s.get<std::string>());
    }
    return out;
}

}  // namespace

McqFile read_mcq_file(const std::string& path, int64_t model_vocab_size) {
    McqFile f;
    f.path = path;
    const std::string b = read_file(path);
    const uint64_t size = b.size();
    if (size < 16) fail(path, static_cast<int64_t>(size), HQ_MSG("file is " << size << " bytes, shorter than the 16-byte preamble"));
    if (std::memcmp(b.data(), kHqmcqMagic, 8) != 0)
        fail(path, 0, "bad magic: not an .hqmcq question file (expected bytes 48 51 4D 43 51 00 00 01)");
    if (rd_u32(b, 8) != 1) fail(path, 8, HQ_MSG("unsupported format version " << rd_u32(b, 8) << " (this trainer reads 1)"));
    const uint64_t H = rd_u32(b, 12);
    if (16 + H > size) fail(path, 12, HQ_MSG("header length " << H << " runs past the end of the " << size << "-byte file"));
    try {
        f.header = nlohmann::json::parse(b.begin() + 16, b.begin() + 16 + static_cast<int64_t>(H));
    } catch (const nlohmann::json::exception& e) {
        fail(path, 16, HQ_MSG("header is not valid JSON: " << e.what()));
    }
    const nlohmann::json& h = f.header;
    if (!h.is_object() || h.value("format", std::string()) != "hqmcq") fail(path, 16, "header field \"format\" is not \"hqmcq\"");
    if (header_int(path, h, "version", 0) != 1) fail(path, 16, "header field \"version\" is not 1");
    f.n_questions = header_int(path, h, "n_questions", 0);
    f.n_tokens = header_int(path, h, "n_tokens", 0);
    f.vocab_size = header_int(path, h, "vocab_size", 1);
    f.pad_id = header_int(path, h, "pad_id", 0);
    f.choice_labels = header_strings(path, h, "choice_labels");
    f.subjects = header_strings(path, h, "subjects");
    auto ci = h.find("choice_ids");
    if (ci == h.end() || !ci->is_array() || ci->size() != f.choice_labels.size() || ci->size() < 2)
        fail(path, 16, "header field \"choice_ids\" must be a list of >= 2 ids, one per choice label");
    for (const auto& x : *ci) {
        if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() >= f.vocab_size)
            fail(path, 16, HQ_MSG("choice id " << x.dump() << " is not an integer in [0, vocab_size=" << f.vocab_size << ")"));
        f.choice_ids.push_back(x.get<int32_t>());
    }
    if (f.pad_id >= f.vocab_size) fail(path, 16, HQ_MSG("pad_id " << f.pad_id << " is not below vocab_size " << f.vocab_size));
    if (model_vocab_size > 0 && f.vocab_size > model_vocab_size)
        fail(path, 16, HQ_MSG("the questions were tokenized for vocab_size " << f.vocab_size << " but the model has "
                              << model_vocab_size << " embeddings (another tokenizer?)"));
    if (f.n_questions > (int64_t(1) << 32) || f.n_tokens > (int64_t(1) << 40))
        fail(path, 16, "header declares an implausibly large n_tokens / n_questions");
    const uint64_t P = round8(16 + H);
    for (uint64_t o = 16 + H; o < P && o < size; ++o)
        if (b[o] != ' ') fail(path, static_cast<int64_t>(o), "header padding byte is not 0x20 (space)");
    const uint64_t nq = static_cast<uint64_t>(f.n_questions), nt = static_cast<uint64_t>(f.n_tokens);
    const uint64_t ids_at = P + 8 * (nq + 1), ans_at = ids_at + 4 * nt, subj_at = ans_at + 4 * nq,
                   end = round8(subj_at + 4 * nq);
    if (size != end)
        fail(path, static_cast<int64_t>(std::min(size, end)),
             HQ_MSG("file is " << size << " bytes but its header (n_questions=" << nq << ", n_tokens=" << nt
                    << ") implies " << end));
    f.offsets.resize(nq + 1);
    for (uint64_t i = 0; i <= nq; ++i) {
        f.offsets[i] = rd_u64(b, P + 8 * i);
        if ((i == 0 && f.offsets[0] != 0) || (i > 0 && f.offsets[i] <= f.offsets[i - 1]) || f.offsets[i] > nt)
            fail(path, static_cast<int64_t>(P + 8 * i),
                 HQ_MSG("offset of question " << i << " is " << f.offsets[i] << " (offsets start at 0, increase, end at n_tokens)"));
    }
    if (f.offsets[nq] != nt) fail(path, static_cast<int64_t>(P + 8 * nq), "the last offset is not n_tokens");
    f.ids.resize(nt);
    if (nt) std::memcpy(f.ids.data(), b.data() + ids_at, 4 * nt);
    for (uint64_t t = 0; t < nt; ++t)
        if (f.ids[t] >= static_cast<uint64_t>(f.vocab_size))
            fail(path, static_cast<int64_t>(ids_at + 4 * t), HQ_MSG("token id " << f.ids[t] << " is not below vocab_size " << f.vocab_size));
    f.answer.resize(nq);
    f.subject.resize(nq);
    if (nq) {
        std::memcpy(f.answer.data(), b.data() + ans_at, 4 * nq);
        std::memcpy(f.subject.data(), b.data() + subj_at, 4 * nq);
    }
    for (uint64_t i = 0; i < nq; ++i) {
        if (f.answer[i] >= f.choice_ids.size())
            fail(path, static_cast<int64_t>(ans_at + 4 * i), HQ_MSG("answer " << f.answer[i] << " of question " << i << " is not below n_choices " << f.choice_ids.size()));
        if (f.subject[i] >= f.subjects.size())
            fail(path, static_cast<int64_t>(subj_at + 4 * i), HQ_MSG("subject " << f.subject[i] << " of question " << i << " is not below " << f.subjects.size()));
    }
    for (uint64_t o = subj_at + 4 * nq; o < end; ++o)
        if (b[o] != 0) fail(path, static_cast<int64_t>(o), "trailing padding byte is not zero");
    return f;
}

std::string encode_mcq_file(const std::vector<std::vector<uint32_t>>& prompts, const std::vector<uint32_t>& answers,
                            const std::vector<uint32_t>& subjects, nlohmann::json header) {
    HQ_ASSERT(prompts.size() == answers.size() && prompts.size() == subjects.size());
    uint64_t nt = 0;
    for (const auto& p : prompts) nt += p.size();
    header["format"] = "hqmcq";
    header["version"] = 1;
    header["n_questions"] = prompts.size();
    header["n_tokens"] = nt;
    std::string b = frame_rows(kHqmcqMagic, header.dump(), prompts);
    for (uint32_t a : answers) wr_u32(b, a);
    for (uint32_t s : subjects) wr_u32(b, s);
    b.append(round8(b.size()) - b.size(), '\0');
    return b;
}

nlohmann::json McqResult::summary() const {
    nlohmann::json subj = nlohmann::json::array();
    for (const SubjectScore& s : subjects)
        subj.push_back({{"subject", s.subject}, {"n", s.n}, {"correct", s.correct}, {"accuracy", s.accuracy}});
    return {{"n", n}, {"correct", correct}, {"accuracy", accuracy}, {"macro_accuracy", macro_accuracy},
            {"truncated", truncated}, {"seconds", seconds}, {"subjects", subj}};
}

int64_t choice_logits(Model& model, const std::vector<std::vector<int32_t>>& prompts,
                      const std::vector<int32_t>& choice_ids, const McqOptions& opt, std::vector<float>& out) {
    const int64_t n = static_cast<int64_t>(prompts.size());
    const int K = static_cast<int>(choice_ids.size());
    const int64_t V = model.config().vocab_size;
    out.assign(static_cast<size_t>(n) * K, 0.0f);
    auto len_of = [&](int64_t i) {
        const int64_t L = static_cast<int64_t>(prompts[i].size());
        return opt.max_len > 0 ? std::min(L, opt.max_len) : L;
    };
    int64_t truncated = 0;
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    for (int64_t i = 0; i < n; ++i) {
        HQ_CHECK(!prompts[i].empty(), "E_MCQ", "prompt " << i << " is empty", Where{}, "every prompt holds at least BOS");
        truncated += len_of(i) < static_cast<int64_t>(prompts[i].size());
    }
    // Longest first: each batch is padded to its first row, so similar lengths share a batch.
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return len_of(a) > len_of(b); });
    std::vector<int32_t> ids;
    std::vector<float> logits;
    std::vector<int32_t> last;   // [B] last prompt position of each row
    int64_t done = 0;
    for (size_t s = 0; s < order.size();) {
        const int T = static_cast<int>(len_of(order[s]));
        const size_t row_bytes = static_cast<size_t>(T) * static_cast<size_t>(V) * sizeof(float);
        const int cap = static_cast<int>(std::max<size_t>(1, std::min<size_t>(opt.max_batch > 0 ? opt.max_batch : 1,
                                                                              opt.max_logits_bytes / row_bytes)));
        const int B = static_cast<int>(std::min<size_t>(cap, order.size() - s));
        ids.assign(static_cast<size_t>(B) * T, 0);   // right padding: invisible to real positions (causal)
        for (int r = 0; r < B; ++r) {
            const std::vector<int32_t>& p = prompts[order[s + r]];
            const int64_t L = len_of(order[s + r]);
            std::copy(p.end() - L, p.end(), ids.begin() + static_cast<size_t>(r) * T);   // keep the last L tokens
        }
        last.resize(static_cast<size_t>(B));
        for (int r = 0; r < B; ++r) last[r] = static_cast<int32_t>(len_of(order[s + r]) - 1);
        logits.resize(static_cast<size_t>(B) * V);
        model.forward_logits_at(ids.data(), B, T, last.data(), logits.data());   // [B, V] at the last positions
        for (int r = 0; r < B; ++r) {
            const int64_t i = order[s + r];
            const float* row = logits.data() + static_cast<size_t>(r) * V;
            for (int k = 0; k < K; ++k) out[static_cast<size_t>(i) * K + k] = row[choice_ids[k]];
        }
        s += B;
        done += B;
        if (opt.progress) opt.progress(done, n);
    }
    return truncated;
}

McqResult score_mcq(Model& model, const McqFile& file, const McqOptions& opt) {
    const auto t0 = std::chrono::steady_clock::now();
    HQ_CHECK(file.vocab_size <= model.config().vocab_size, "E_MCQ",
             file.path << " was tokenized for vocab_size " << file.vocab_size << " but the model has " << model.config().vocab_size,
             (Where{file.path, "", "", -1, -1}), "tokenize the questions with this model's tokenizer");
    model.set_training(false, 0);
    const int64_t n = opt.max_questions > 0 ? std::min(opt.max_questions, file.n_questions) : file.n_questions;
    std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
        prompts[i].assign(file.ids.begin() + static_cast<int64_t>(file.offsets[i]),
                          file.ids.begin() + static_cast<int64_t>(file.offsets[i + 1]));
    McqResult r;
    r.n = n;
    r.truncated = choice_logits(model, prompts, file.choice_ids, opt, r.choice_logits);
    const int K = file.n_choices();
    std::vector<SubjectScore> per(file.subjects.size());
    for (int64_t i = 0; i < n; ++i) {
        const float* row = r.choice_logits.data() + static_cast<size_t>(i) * K;
        const int pred = static_cast<int>(std::max_element(row, row + K) - row);   // first maximum on ties
        r.predictions.push_back(pred);
        SubjectScore& s = per[file.subject[i]];
        s.n += 1;
        const bool ok = pred == static_cast<int>(file.answer[i]);
        s.correct += ok;
        r.correct += ok;
    }
    double macro = 0.0;
    for (size_t k = 0; k < per.size(); ++k) {
        if (per[k].n == 0) continue;
        per[k].subject = file.subjects[k];
        per[k].accuracy = static_cast<double>(per[k].correct) / static_cast<double>(per[k].n);
        macro += per[k].accuracy;
        r.subjects.push_back(per[k]);
    }
    r.accuracy = n > 0 ? static_cast<double>(r.correct) / static_cast<double>(n) : 0.0;
    r.macro_accuracy = r.subjects.empty() ? 0.0 : macro / static_cast<double>(r.subjects.size());
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

AdapterOff::AdapterOff(Model& model) : model_(model) {
    for (AdaptedModule& m : model_.modules()) {
        saved_.emplace_back(m.B->w, m.B->w + m.B->numel);
        std::fill(m.B->w, m.B->w + m.B->numel, 0.0f);
    }
}

AdapterOff::~AdapterOff() {
    size_t k = 0;
    for (AdaptedModule& m : model_.modules()) std::copy(saved_[k].begin(), saved_[k].end(), m.B->w), ++k;
}

}  // namespace hq
