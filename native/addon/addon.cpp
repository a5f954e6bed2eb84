// addon.cpp — hqlora.node: the native core for the extension host (node-addon-api). Kept thin (STYLE §5):
//   inspect(path)                      sync   -> object (inspect.h)
//   mergeLevels(opts, onProgress?)     Promise<report> (merge.h merge_levels)
//   mergeIntoBase(opts, onProgress?)   Promise<report> (merge.h merge_into_base)
//   combine(opts, onProgress?)         Promise<report> (merge.h combine_adapters)
//   exportGguf(opts, onProgress?)      Promise<report> (gguf_export.h export_gguf)
//   ggufReferenceLogits(opts)          Promise<{ids, vocab, batch, seq, logits}> (gguf_export.h)
//   new CancelToken(); token.cancel()  shared flag polled by the worker between modules / tensors
// Slow work runs in an AsyncWorker on the libuv pool; progress reaches JS through a ThreadSafeFunction; every
// hq::Error becomes a JS Error with `code`, `where` {file, tensor, key, offset, line} and `hint`.
// The typed JS face is extension/native/addon.ts (the only require() of this file).
#include <napi.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "error.h"
#include "gguf_export.h"
#include "inspect.h"
#include "merge.h"
#include "version.h"

namespace {

using nlohmann::json;

Napi::Value json_to_js(Napi::Env env, const json& j) {
    Napi::Object JSON = env.Global().Get("JSON").As<Napi::Object>();
    return JSON.Get("parse").As<Napi::Function>().Call(JSON, {Napi::String::New(env, j.dump())});
}

json js_to_json(Napi::Env env, Napi::Value v) {
    Napi::Object JSON = env.Global().Get("JSON").As<Napi::Object>();
    Napi::Value s = JSON.Get("stringify").As<Napi::Function>().Call(JSON, {v});
    return s.IsString() ? json::parse(s.As<Napi::String>().Utf8Value()) : json();
}

Napi::Error to_js_error(Napi::Env env, const std::string& code, const std::string& msg, const hq::Where& w,
                        const std::string& hint) {
    Napi::Error e = Napi::Error::New(env, msg);
    e.Set("code", code);
    Napi::Object where = Napi::Object::New(env);
    if (!w.file.empty()) where.Set("file", w.file);
    if (!w.tensor.empty()) where.Set("tensor", w.tensor);
    if (!w.key.empty()) where.Set("key", w.key);
    if (w.offset >= 0) where.Set("offset", double(w.offset));
    if (w.line >= 0) where.Set("line", double(w.line));
    e.Set("where", where);
    e.Set("hint", hint);
    return e;
}

// --- CancelToken ------------------------------------------------------------------------------------------------
class CancelToken : public Napi::ObjectWrap<CancelToken> {
  public:
    static Napi::Function Init(Napi::Env env) {
        return DefineClass(env, "CancelToken",
                           {InstanceMethod("cancel", &CancelToken::Cancel),
                            InstanceAccessor("cancelled", &CancelToken::Cancelled, nullptr)});
    }
    explicit CancelToken(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CancelToken>(info) {}
    std::shared_ptr<std::atomic<bool>> flag = std::make_shared<std::atomic<bool>>(false);

  private:
    Napi::Value Cancel(const Napi::CallbackInfo& info) {
        flag->store(true);
        return info.Env().Undefined();
    }
    Napi::Value Cancelled(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), flag->load()); }
};
Napi::FunctionReference* g_cancel_ctor = nullptr;

// --- options ----------------------------------------------------------------------------------------------------
std::string str(const json& o, const char* k, const std::string& def = "") {
    return o.contains(k) && o[k].is_string() ? o[k].get<std::string>() : def;
}

void common_from(const json& o, hq::ExportCommon& c) {
    c.out_dir = str(o, "out");
    c.overwrite = o.value("overwrite", false);
    c.base_model = str(o, "baseModel");
    c.verify = o.value("verify", true);
    if (o.contains("tolerance") && o["tolerance"].is_number()) c.tolerance = o["tolerance"].get<double>();
    if (o.contains("lossyTolerance") && o["lossyTolerance"].is_number()) c.lossy_tolerance = o["lossyTolerance"].get<double>();
    if (o.contains("quantization") && o["quantization"].is_object()) {
        const json& q = o["quantization"];
        c.quant_set = true;
        c.quant.type = str(q, "type", "nf4");
        c.quant.double_quant = q.value("double_quant", true);
        c.quant.blocksize = q.value("blocksize", 64);
    }
}

// --- the worker -------------------------------------------------------------------------------------------------
using Job = std::function<json(const std::function<void(const hq::MergeProgress&)>&, const std::atomic<bool>*)>;

class ExportWorker : public Napi::AsyncWorker {
  public:
    ExportWorker(Napi::Env env, Job job, Napi::Value on_progress, std::shared_ptr<std::atomic<bool>> cancel)
        : Napi::AsyncWorker(env, "hqlora.export"), job_(std::move(job)),
          settle_(std::make_shared<Settle>(Settle{Napi::Promise::Deferred::New(env), false, nullptr})),
          cancel_(cancel ? std::move(cancel) : std::make_shared<std::atomic<bool>>(false)) {
        if (on_progress.IsFunction()) {
            // The promise settles in the finalizer, which runs after the last queued progress call: BlockingCall
            // only waits for room in the queue, so OnOK could otherwise resolve before the last progress arrives.
            std::shared_ptr<Settle> s = settle_;
            tsfn_ = Napi::ThreadSafeFunction::New(env, on_progress.As<Napi::Function>(), "hqlora.progress", 0, 1,
                                                  [s](Napi::Env e) {
                                                      s->progress_done = true;
                                                      if (s->action) std::exchange(s->action, nullptr)(e);
                                                  });
            has_tsfn_ = true;
        } else {
            settle_->progress_done = true;
        }
    }
    Napi::Promise promise() { return settle_->deferred.Promise(); }

    void Execute() override {
        auto progress = [this](const hq::MergeProgress& p) {
            if (!has_tsfn_) return;
            auto* copy = new hq::MergeProgress(p);
            napi_status st = tsfn_.BlockingCall(copy, [](Napi::Env env, Napi::Function cb, hq::MergeProgress* d) {
                Napi::Object o = Napi::Object::New(env);
                o.Set("phase", d->phase);
                o.Set("done", double(d->done));
                o.Set("total", double(d->total));
                o.Set("item", d->item);
                delete d;
                cb.Call({o});   // an exception thrown by the callback surfaces as an uncaught exception in JS
            });
            if (st != napi_ok) delete copy;
        };
        try {
            result_ = job_(progress, cancel_.get());
        } catch (const hq::Error& e) {
            code_ = e.code();
            where_ = e.where();
            hint_ = e.hint();
            SetError(e.what());
        } catch (const std::exception& e) {
            code_ = "E_INTERNAL";
            hint_ = "please report this as a bug";
            SetError(e.what());
        }
        if (has_tsfn_) tsfn_.Release();
        has_tsfn_ = false;
    }
    void OnOK() override {
        std::shared_ptr<Settle> s = settle_;
        later([s, r = std::move(result_)](Napi::Env e) { s->deferred.Resolve(json_to_js(e, r)); });
    }
    void OnError(const Napi::Error& err) override {
        std::shared_ptr<Settle> s = settle_;
        later([s, code = code_, msg = err.Message(), where = where_, hint = hint_](Napi::Env e) {
            s->deferred.Reject(to_js_error(e, code, msg, where, hint).Value());
        });
    }

  private:
    // Main-thread state shared with the progress function's finalizer (the worker is deleted after OnOK).
    struct Settle {
        Napi::Promise::Deferred deferred;
        bool progress_done = false;
        std::function<void(Napi::Env)> action;
    };
    void later(std::function<void(Napi::Env)> f) {
        if (settle_->progress_done)
            f(Env());
        else
            settle_->action = std::move(f);
    }

    Job job_;
    std::shared_ptr<Settle> settle_;
    std::shared_ptr<std::atomic<bool>> cancel_;
    Napi::ThreadSafeFunction tsfn_;
    bool has_tsfn_ = false;
    json result_;
    std::string code_, hint_;
    hq::Where where_;
};

// (opts, onProgress?) -> Promise. Option errors reject the promise (never throw synchronously).
template <class MakeJob>
Napi::Value start(const Napi::CallbackInfo& info, MakeJob make_job) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) {
        auto d = Napi::Promise::Deferred::New(env);
        d.Reject(to_js_error(env, "E_CONFIG", "options object expected", hq::Where{}, "pass {source, out, ...}").Value());
        return d.Promise();
    }
    Napi::Object jo = info[0].As<Napi::Object>();
    std::shared_ptr<std::atomic<bool>> cancel;
    if (jo.Has("cancel") && jo.Get("cancel").IsObject() && g_cancel_ctor &&
        jo.Get("cancel").As<Napi::Object>().InstanceOf(g_cancel_ctor->Value()))
        cancel = CancelToken::Unwrap(jo.Get("cancel").As<Napi::Object>())->flag;
    json o = js_to_json(env, jo);
    Job job;
    try {
        job = make_job(o);
    } catch (const hq::Error& e) {
        auto d = Napi::Promise::Deferred::New(env);
        d.Reject(to_js_error(env, e.code(), e.what(), e.where(), e.hint()).Value());
        return d.Promise();
    }
    auto* w = new ExportWorker(env, std::move(job), info.Length() > 1 ? info[1] : env.Undefined(), cancel);
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
}

template <class Opts>
void attach(Opts& opt, const std::function<void(const hq::MergeProgress&)>& pr, const std::atomic<bool>* c) {
    opt.progress = pr;
    opt.cancel = c;
}

Napi::Value MergeLevels(const Napi::CallbackInfo& info) {
    return start(info, [](const json& o) -> Job {
        hq::MergeLevelsOptions opt;
        common_from(o, opt);
        opt.source = str(o, "source");
        opt.rank = o.value("rank", 0);
        return [opt](auto& pr, auto* c) mutable { attach(opt, pr, c); return hq::merge_levels(opt); };
    });
}

Napi::Value MergeIntoBase(const Napi::CallbackInfo& info) {
    return start(info, [](const json& o) -> Job {
        hq::MergeIntoBaseOptions opt;
        common_from(o, opt);
        opt.source = str(o, "source");
        opt.base = str(o, "base", "dequantized");
        opt.dtype = str(o, "dtype", "bf16");
        if (o.contains("maxShardBytes") && o["maxShardBytes"].is_number())
            opt.max_shard_bytes = uint64_t(o["maxShardBytes"].get<double>());
        return [opt](auto& pr, auto* c) mutable { attach(opt, pr, c); return hq::merge_into_base(opt); };
    });
}

Napi::Value Combine(const Napi::CallbackInfo& info) {
    return start(info, [](const json& o) -> Job {
        hq::CombineOptions opt;
        common_from(o, opt);
        if (o.contains("sources") && o["sources"].is_array())
            for (const json& s : o["sources"])
                if (s.is_string()) opt.sources.push_back(s.get<std::string>());
        opt.mode = str(o, "mode", "concat");
        if (o.contains("weights") && o["weights"].is_array())
            for (const json& w : o["weights"]) opt.weights.push_back(w.is_number() ? w.get<double>() : NAN);
        opt.rank = o.value("rank", 0);
        return [opt](auto& pr, auto* c) mutable { attach(opt, pr, c); return hq::combine_adapters(opt); };
    });
}

Napi::Value ExportGguf(const Napi::CallbackInfo& info) {
    return start(info, [](const json& o) -> Job {
        hq::GgufExportOptions opt;
        common_from(o, opt);
        opt.source = str(o, "source");
        opt.base = str(o, "base", "dequantized");
        opt.type = str(o, "type", "f16");
        opt.write_merged = o.value("merged", true);
        opt.write_base = o.value("baseGguf", true);
        opt.write_lora = o.value("lora", true);
        opt.levels = o.value("levels", 0);
        return [opt](auto& pr, auto* c) mutable { attach(opt, pr, c); return hq::export_gguf(opt); };
    });
}

Napi::Value GgufReferenceLogits(const Napi::CallbackInfo& info) {
    return start(info, [](const json& o) -> Job {
        const std::string source = str(o, "source"), base_model = str(o, "baseModel"), base = str(o, "base", "dequantized");
        const bool with_adapter = o.value("withAdapter", true);
        const std::string round = str(o, "round", "");
        return [=](auto&, auto*) { return hq::gguf_reference_logits(source, base_model, base, with_adapter, round); };
    });
}

Napi::Value Inspect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString())
        throw to_js_error(env, "E_CONFIG", "inspect(path): path string expected", hq::Where{}, "");
    try {
        return json_to_js(env, hq::inspect_path(info[0].As<Napi::String>().Utf8Value()));
    } catch (const hq::Error& e) {
        throw to_js_error(env, e.code(), e.what(), e.where(), e.hint());
    }
}

Napi::Value Summary(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), hq::export_summary(js_to_json(info.Env(), info[0])));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = CancelToken::Init(env);
    g_cancel_ctor = new Napi::FunctionReference(Napi::Persistent(ctor));
    exports.Set("CancelToken", ctor);
    exports.Set("inspect", Napi::Function::New(env, Inspect));
    exports.Set("mergeLevels", Napi::Function::New(env, MergeLevels));
    exports.Set("mergeIntoBase", Napi::Function::New(env, MergeIntoBase));
    exports.Set("combine", Napi::Function::New(env, Combine));
    exports.Set("exportGguf", Napi::Function::New(env, ExportGguf));
    exports.Set("ggufReferenceLogits", Napi::Function::New(env, GgufReferenceLogits));
    exports.Set("summary", Napi::Function::New(env, Summary));
    exports.Set("version", Napi::String::New(env, HQ_VERSION));
    return exports;
}

}  // namespace

NODE_API_MODULE(hqlora, Init)
