// The OpenAI-compatible surface of tandem-cloud, as OpenAI's clients use it (the official
// `openai` packages, LangChain, curl scripts): the error shape, chat completion requests and
// the JSON of completions, stream chunks and models. The HTTP layer (http_server.cpp) only
// moves these objects; docs/protocol.md is the contract.
//
//   request field              accepted
//   messages                   non-empty array of {role, content}; role system | developer (=
//                              system) | user | assistant; content a string or an array of
//                              {"type": "text", "text": ...} parts (joined); null only for
//                              assistant
//   model                      any string (the answer names the served model)
//   max_completion_tokens,     integer 1..4096 (max_completion_tokens wins when both are given);
//   max_tokens                 default 256
//   temperature                0..2, default 1 (0: greedy)
//   top_p                      (0, 1], default 1
//   seed                       integer: the same seed and request give the same text
//   frequency_penalty,         -2..2, default 0
//   presence_penalty
//   stop                       a string or an array of at most 4 non-empty strings; the
//                              generation ends before the first, which is not in the text
//   n                          1 only
//   stream, stream_options     stream_options.include_usage: a last chunk with the usage
//   tools, functions,          refused (400): not supported
//   logprobs: true, response_format other than text
//   anything else              ignored (user, metadata, store, ...)
//
// Errors: {"error": {"message", "type", "param", "code"}}; param and code are null when they do
// not apply. Messages are written for people and name the field.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "tandem/cloud/llm.h"

namespace tandem::cloud {

struct ApiError {
    int status = 400;
    std::string type = "invalid_request_error";
    std::string message;
    std::string param;  // "" -> null
    std::string code;   // "" -> null
};

nlohmann::json error_body(const ApiError& e);

// The body as a JSON object, or an ApiError (400) saying where the JSON is broken.
nlohmann::json parse_json_object(const std::string& body);

struct ChatRequest {
    ChatParams params;
    bool stream = false;
    bool include_usage = false;  // stream_options.include_usage
};
// Parses a POST /v1/chat/completions body. Throws ApiError (400, naming the param).
ChatRequest parse_chat_request(const std::string& body);

// A whole completion (stream: false).
nlohmann::json completion_json(const std::string& id, int64_t created, const std::string& model, const std::string& text,
                               const std::string& finish_reason, int64_t prompt_tokens, int64_t completion_tokens);
// One stream chunk with this delta and finish_reason (null while generating); with_usage adds
// "usage": null, as OpenAI does on every chunk when include_usage is set.
nlohmann::json chunk_json(const std::string& id, int64_t created, const std::string& model, const nlohmann::json& delta,
                          const nlohmann::json& finish_reason, bool with_usage);
// The last chunk of an include_usage stream: no choices, the usage.
nlohmann::json usage_chunk_json(const std::string& id, int64_t created, const std::string& model, int64_t prompt_tokens,
                                int64_t completion_tokens);
// A model object of GET /v1/models.
nlohmann::json model_json(const std::string& name, int64_t created);

}  // namespace tandem::cloud
