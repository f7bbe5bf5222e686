// Internal to cloud_adapter: the cloud's answers parsed into the typed results of
// tandem/cloud_adapter.h. Every function takes any bytes: a body that is not the expected JSON
// gives malformed_json or bad_response with `msg` saying what is missing; nothing throws, and
// a number that does not fit its field is treated as absent. tests/fuzz/fuzz-cloud-responses.cpp
// runs them on arbitrary input.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <system_error>

#include "tandem/cloud_adapter.h"
#include "tandem/sse_parser.h"

namespace tandem::detail {

// POST /v1/chat/completions without streaming.
std::error_code parse_chat(const std::string& body, ChatResult& out, std::string& msg);
// GET /v1/memory/changes.
std::error_code parse_page(const std::string& body, FeedPage& page, std::string& msg);
// GET /v1/sources/{doc_id}.
std::error_code parse_source(const std::string& body, SourcePassage& out, std::string& msg);
// DELETE /v1/memory/...: the number of notes deleted (1 for one item; 0 when the answer has none).
std::error_code parse_forget(const std::string& body, ForgetScope scope, int64_t& deleted, std::string& msg);

// One streamed chat completion: the SSE events' JSON chunks joined into `result`, each text
// delta passed to on_delta. The first error, or the [DONE] marker, ends the reading of events.
struct StreamState {
    CloudClient::DeltaFn on_delta;
    std::unique_ptr<SseParser> parser;
    bool sse = true;          // false: the server answered with plain JSON instead
    std::string plain;        // that JSON
    ChatResult result;
    bool done_marker = false;  // saw data: [DONE]
    bool delivered = false;    // some delta reached on_delta (no retry after that)
    std::error_code err;
    std::string err_msg;

    void on_event(const SseEvent& ev);
};

}  // namespace tandem::detail
