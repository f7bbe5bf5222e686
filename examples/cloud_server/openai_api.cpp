// Chat completion requests and answers in OpenAI's shapes (openai_api.h).
#include "tandem/cloud/openai_api.h"

#include <cstdio>

namespace tandem::cloud {

using json = nlohmann::json;

json error_body(const ApiError& e) {
    return {{"error",
             {{"message", e.message},
              {"type", e.type},
              {"param", e.param.empty() ? json(nullptr) : json(e.param)},
              {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

static ApiError bad(const std::string& param, const std::string& message, const std::string& code = "") {
    return ApiError{400, "invalid_request_error", message, param, code};
}

json parse_json_object(const std::string& body) {
    json j;
    try {
        j = json::parse(body);
    } catch (const json::parse_error& e) {
        if (body.find_first_not_of(" \t\r\n") == std::string::npos)
            throw bad("", "malformed JSON: the request body is empty; send a JSON object");
        if (e.byte > body.size())
            throw bad("", "malformed JSON: the request body ends in the middle of a value");
        throw bad("", "malformed JSON: the request body is not valid JSON (at byte " + std::to_string(e.byte) + ")");
    } catch (const json::exception&) {  // out_of_range 406: a number beyond a double's range, e.g. 1e999
        throw bad("", "malformed JSON: a number in the request body is too large for a double");
    }
    if (!j.is_object()) throw bad("", "the request body must be a JSON object");
    return j;
}

// ---- chat requests ---------------------------------------------------------------------

// The field's value, or nullptr when it is absent or null (OpenAI treats both as "default").
static const json* field(const json& j, const char* key) {
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
}

static double number_in(const json& j, const char* key, double lo, double hi, double fallback, bool lo_open = false) {
    const json* v = field(j, key);
    if (!v) return fallback;
    char range[96];
    std::snprintf(range, sizeof range, "%s%g, %g]", lo_open ? "(" : "[", lo, hi);
    if (!v->is_number()) throw bad(key, std::string("'") + key + "' must be a number in " + range);
    const double x = v->get<double>();
    if (!(lo_open ? x > lo : x >= lo) || !(x <= hi))
        throw bad(key, std::string("'") + key + "' must be in " + range + ", got " + v->dump());
    return x;
}

static std::string content_text(const json& m, size_t i, const std::string& role) {
    const std::string where = "messages[" + std::to_string(i) + "].content";
    auto it = m.find("content");
    if (it == m.end() || it->is_null()) {
        if (role == "assistant") return "";
        throw bad(where, "'" + where + "' is required for a " + role + " message");
    }
    if (it->is_string()) return it->get<std::string>();
    if (!it->is_array())
        throw bad(where, "'" + where + "' must be a string or an array of {\"type\": \"text\", \"text\": ...} parts");
    std::string text;
    for (size_t k = 0; k < it->size(); k++) {
        const json& part = (*it)[k];
        const std::string pw = where + "[" + std::to_string(k) + "]";
        if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
            throw bad(pw, "'" + pw + "' must be an object with a 'type'");
        const std::string type = part["type"].get<std::string>();
        if (type != "text")
            throw bad(pw + ".type", "content parts of type '" + type + "' are not supported; this server reads text only");
        if (!part.contains("text") || !part["text"].is_string())
            throw bad(pw + ".text", "'" + pw + ".text' must be a string");
        text += part["text"].get<std::string>();
    }
    return text;
}

static int max_tokens_of(const json& j) {
    const char* key = field(j, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    const json* v = field(j, key);
    if (!v) return 256;
    if (!v->is_number_integer() || v->get<int64_t>() < 1 || v->get<int64_t>() > 4096)
        throw bad(key, std::string("'") + key + "' must be an integer from 1 to 4096, got " + v->dump());
    return (int)v->get<int64_t>();
}

static std::vector<std::string> stop_of(const json& j) {
    const json* v = field(j, "stop");
    if (!v) return {};
    std::vector<std::string> out;
    if (v->is_string()) {
        out.push_back(v->get<std::string>());
    } else if (v->is_array() && v->size() <= 4) {
        for (const json& s : *v) {
            if (!s.is_string()) throw bad("stop", "'stop' must be a string or an array of at most 4 strings");
            out.push_back(s.get<std::string>());
        }
    } else {
        throw bad("stop", "'stop' must be a string or an array of at most 4 strings");
    }
    for (const std::string& s : out)
        if (s.empty()) throw bad("stop", "'stop' strings must not be empty");
    return out;
}

ChatRequest parse_chat_request(const std::string& body) {
    const json j = parse_json_object(body);
    ChatRequest r;
    ChatParams& p = r.params;
    if (const json* m = field(j, "model"); m && !m->is_string()) throw bad("model", "'model' must be a string");
    const json* msgs = field(j, "messages");
    if (!msgs) throw bad("messages", "'messages' is required: an array of {\"role\", \"content\"} objects");
    if (!msgs->is_array() || msgs->empty()) throw bad("messages", "'messages' must be a non-empty array");
    for (size_t i = 0; i < msgs->size(); i++) {
        const json& m = (*msgs)[i];
        const std::string where = "messages[" + std::to_string(i) + "]";
        if (!m.is_object()) throw bad(where, "'" + where + "' must be an object with 'role' and 'content'");
        if (!m.contains("role") || !m["role"].is_string())
            throw bad(where + ".role", "'" + where + ".role' must be a string");
        std::string role = m["role"].get<std::string>();
        if (role == "developer") role = "system";
        if (role != "system" && role != "user" && role != "assistant")
            throw bad(where + ".role", "message role '" + role + "' is not supported: use system, developer, user or assistant");
        p.messages.emplace_back(role, content_text(m, i, role));
    }
    for (const char* unsupported : {"tools", "functions", "tool_choice", "function_call"})
        if (field(j, unsupported)) throw bad(unsupported, std::string("'") + unsupported + "' is not supported: this server has no tool calling");
    if (const json* lp = field(j, "logprobs"); lp && !(lp->is_boolean() && !lp->get<bool>()))
        throw bad("logprobs", "'logprobs' is not supported");
    if (const json* rf = field(j, "response_format");
        rf && !(rf->is_object() && rf->value("type", "") == "text"))
        throw bad("response_format", "only {\"type\": \"text\"} is supported as 'response_format'");
    if (const json* n = field(j, "n"); n && !(n->is_number_integer() && n->get<int64_t>() == 1))
        throw bad("n", "'n' must be 1: this server makes one choice per request");
    p.max_tokens = max_tokens_of(j);
    p.temperature = number_in(j, "temperature", 0, 2, 1.0);
    p.top_p = number_in(j, "top_p", 0, 1, 1.0, /*lo_open=*/true);
    p.frequency_penalty = number_in(j, "frequency_penalty", -2, 2, 0);
    p.presence_penalty = number_in(j, "presence_penalty", -2, 2, 0);
    if (const json* s = field(j, "seed")) {
        if (!s->is_number_integer()) throw bad("seed", "'seed' must be an integer");
        p.seed = s->is_number_unsigned() ? s->get<uint64_t>() : (uint64_t)s->get<int64_t>();
    }
    p.stop = stop_of(j);
    if (const json* s = field(j, "stream")) {
        if (!s->is_boolean()) throw bad("stream", "'stream' must be true or false");
        r.stream = s->get<bool>();
    }
    if (const json* so = field(j, "stream_options")) {
        if (!r.stream) throw bad("stream_options", "'stream_options' is only allowed when 'stream' is true");
        if (!so->is_object()) throw bad("stream_options", "'stream_options' must be an object");
        if (const json* u = field(*so, "include_usage")) {
            if (!u->is_boolean()) throw bad("stream_options.include_usage", "'stream_options.include_usage' must be true or false");
            r.include_usage = u->get<bool>();
        }
    }
    return r;
}

// ---- answers ---------------------------------------------------------------------------

static json usage_json(int64_t pt, int64_t ct) {
    return {{"prompt_tokens", pt}, {"completion_tokens", ct}, {"total_tokens", pt + ct}};
}

json completion_json(const std::string& id, int64_t created, const std::string& model, const std::string& text,
                     const std::string& finish_reason, int64_t prompt_tokens, int64_t completion_tokens) {
    return {{"id", id},
            {"object", "chat.completion"},
            {"created", created},
            {"model", model},
            {"choices",
             {{{"index", 0},
               {"message", {{"role", "assistant"}, {"content", text}, {"refusal", nullptr}}},
               {"logprobs", nullptr},
               {"finish_reason", finish_reason}}}},
            {"usage", usage_json(prompt_tokens, completion_tokens)}};
}

json chunk_json(const std::string& id, int64_t created, const std::string& model, const json& delta,
                const json& finish_reason, bool with_usage) {
    json c = {{"id", id},
              {"object", "chat.completion.chunk"},
              {"created", created},
              {"model", model},
              {"choices", {{{"index", 0}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", finish_reason}}}}};
    if (with_usage) c["usage"] = nullptr;
    return c;
}

json usage_chunk_json(const std::string& id, int64_t created, const std::string& model, int64_t prompt_tokens,
                      int64_t completion_tokens) {
    return {{"id", id},
            {"object", "chat.completion.chunk"},
            {"created", created},
            {"model", model},
            {"choices", json::array()},
            {"usage", usage_json(prompt_tokens, completion_tokens)}};
}

json model_json(const std::string& name, int64_t created) {
    return {{"id", name}, {"object", "model"}, {"created", created}, {"owned_by", "tandem-cloud"}};
}

}  // namespace tandem::cloud
