// error.h — the one error type of the native core, and the check macros.
//
// Every failure that a user can cause (bad file, bad config, bad data) throws hq::Error with
//   code  : stable machine code, e.g. "E_SAFETENSORS" (see docs/CONTRACTS.md §5)
//   msg   : what failed, in words
//   where : file / tensor / offset / key / line, as applicable (becomes the error event's `where`)
//   hint  : what the user can do about it
// Internal invariants use HQ_ASSERT, which reports file:line of the C++ source.
#pragma once
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

namespace hq {

struct Where {
    std::string file;    // user file the error is about (model shard, token file, config)
    std::string tensor;  // tensor name, when about a tensor
    std::string key;     // config key path, e.g. "adapter.levels[2].rank"
    int64_t offset = -1; // byte offset in `file`, -1 if unknown
    int64_t line = -1;   // 1-based line in `file`, -1 if unknown
};

class Error : public std::runtime_error {
  public:
    Error(std::string code, const std::string& msg, Where where = {}, std::string hint = {})
        : std::runtime_error(msg), code_(std::move(code)), where_(std::move(where)), hint_(std::move(hint)) {}
    const std::string& code() const { return code_; }
    const Where& where() const { return where_; }
    const std::string& hint() const { return hint_; }

  private:
    std::string code_;
    Where where_;
    std::string hint_;
};

// Builds a message with stream syntax: HQ_MSG("tensor " << name << " has " << n << " dims").
#define HQ_MSG(expr) ([&]() { std::ostringstream hq_os_; hq_os_ << expr; return hq_os_.str(); }())

// User-facing check: throws hq::Error(code, msg, where, hint) when cond is false.
#define HQ_CHECK(cond, code, msg, where, hint)                                                         \
    do {                                                                                              \
        if (!(cond)) throw ::hq::Error((code), HQ_MSG(msg), (where), (hint));                         \
    } while (0)

// Internal invariant: a bug in H-QLoRA if it fires. Reports the C++ source position.
#define HQ_ASSERT(cond)                                                                               \
    do {                                                                                              \
        if (!(cond))                                                                                  \
            throw ::hq::Error("E_INTERNAL", HQ_MSG("internal check failed: " #cond " at " << __FILE__  \
                                                   << ":" << __LINE__),                               \
                              ::hq::Where{}, "please report this as a bug with the trainer log");     \
    } while (0)

}  // namespace hq
