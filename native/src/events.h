// events.h — the trainer's event stream (docs/CONTRACTS.md §5, schemas/trainer-events.schema.json).
//
// Every event is one JSON object on one line: {"v":1,"type":<type>,"time":<unix seconds>, ...fields}.
// It is written to stdout (then fflush) and, once a run folder is known, appended to <run>/events.jsonl
// (O_APPEND, one write(2) per line, so a crash never leaves half a line before a complete one).
// JSON has no literal for NaN/±Inf: every non-finite float anywhere in an event is encoded as the string
// "NaN", "Infinity" or "-Infinity" (nlohmann would otherwise write null).
#pragma once
#include <cstdio>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "error.h"

namespace hq {

// x as a JSON value: a number when finite, else "NaN" / "Infinity" / "-Infinity".
nlohmann::json json_number(double x);
// Copy of `j` with every non-finite float replaced by its string encoding (recursively).
nlohmann::json encode_non_finite(const nlohmann::json& j);
// Unix time in seconds with sub-second resolution.
double unix_time_s();
// The error event's `where` object: only the fields that are set (file, tensor, key, offset >= 0, line >= 0).
nlohmann::json where_json(const Where& w);

class EventSink {
  public:
    // Events go to `out` (stdout by default; nullptr = nowhere, for tests).
    explicit EventSink(std::FILE* out = stdout);
    ~EventSink();
    EventSink(const EventSink&) = delete;
    EventSink& operator=(const EventSink&) = delete;

    // Also append every later event to `path` (created if missing, never truncated). Throws E_IO.
    void open_log(const std::string& path);
    void close_log();
    const std::string& log_path() const { return log_path_; }

    // Emits {"v":1,"type":type,"time":now} merged with `fields` (an object). Returns the line written (no '\n').
    std::string emit(const std::string& type, const nlohmann::json& fields);
    // `error` event from an hq::Error: code, message, where, hint (+ extra where fields, e.g. {"example": 3}).
    std::string emit_error(const Error& e, const nlohmann::json& extra_where = nlohmann::json::object());
    std::string emit_warning(const std::string& code, const std::string& message);

  private:
    std::FILE* out_;
    int log_fd_ = -1;
    std::string log_path_;
    std::mutex mu_;
};

}  // namespace hq
