// SseParser: an incremental parser for server-sent events (the text/event-stream format of the
// WHATWG HTML standard, section "Parsing an event stream"), as used by OpenAI-compatible
// streaming chat completions.
//
//   stream  = [BOM] *(line)          line ends: CRLF, LF or a lone CR (any mix)
//   ":..."                           comment, ignored (servers send ": ping" keep-alives)
//   "field: value" / "field:value"   one leading space of the value is dropped
//   "field"                          a field with an empty value
//   data                             appended to the event's data, lines joined by "\n"
//   event, id                        the event's type and id; retry: ignored; others ignored
//   empty line                       dispatches the event (if it has any data line)
//
// Bytes may arrive split anywhere, including between the CR and LF of one line ending and
// inside a UTF-8 sequence: feed() buffers until a line is complete. An event that was not
// terminated by an empty line when the stream ends is not dispatched (finish() says so).
//
// Thread-safety: none (one parser per stream).
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace tandem {

struct SseEvent {
    std::string type;  // "event:" field; "" when absent (the default type "message")
    std::string data;  // "data:" lines joined by "\n"
    std::string id;    // "id:" field; "" when absent
};

class SseParser {
public:
    // on_event is called for each complete event, in order, from within feed().
    // max_event_bytes bounds a pending line plus the event's data; past it feed() fails.
    explicit SseParser(std::function<void(const SseEvent&)> on_event,
                       size_t max_event_bytes = 1u << 20);

    // Consumes the next bytes of the stream. Returns false (and stays failed, ignoring further
    // input) when a line or event exceeds max_event_bytes; error() then says why.
    bool feed(std::string_view bytes);

    // End of stream. Returns true when nothing was left pending, false when the stream ended
    // inside a line or inside an event that never got its terminating empty line.
    bool finish();

    const std::string& error() const { return error_; }
    size_t events_dispatched() const { return n_events_; }

private:
    void on_line(std::string_view line);
    void dispatch();

    std::function<void(const SseEvent&)> on_event_;
    size_t max_bytes_;
    std::string line_;       // the incomplete line so far
    SseEvent pending_;       // the event being built
    bool has_data_ = false;  // pending_ got at least one data line
    bool has_fields_ = false;  // pending_ got any field line (for finish())
    bool after_cr_ = false;  // the last byte was a CR: a following LF belongs to it
    bool at_start_ = true;   // a BOM is skipped only at the very start
    bool failed_ = false;
    size_t n_events_ = 0;
    std::string error_;
};

}  // namespace tandem
