// The cloud's answers parsed into typed results (responses.h).
#include "responses.h"

#include <cmath>
#include <cstdint>

#include <nlohmann/json.hpp>

#include "tandem/json_int.h"

namespace tandem::detail {

using json = nlohmann::json;

static std::string str_field(const json& o, const char* key) {
    auto it = o.find(key);
    return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// An integer field that fits int64 (a larger unsigned one does not), else `absent`.
static int64_t int_field(const json& o, const char* key, int64_t absent) {
    auto it = o.find(key);
    return it == o.end() ? absent : json_int_in(*it, INT64_MIN, INT64_MAX).value_or(absent);
}

// body as JSON into j, or malformed_json with msg "<what> body is not JSON".
static std::error_code parse_body(const std::string& body, const char* what, json& j, std::string& msg) {
    j = json::parse(body, nullptr, false);
    if (!j.is_discarded()) return {};
    msg = std::string(what) + " body is not JSON";
    return make_error_code(cloud_errc::malformed_json);
}

// Reads an OpenAI "usage" object ({prompt_tokens, completion_tokens}) when j has one.
static void read_usage(const json& j, ChatResult& out) {
    auto u = j.find("usage");
    if (u == j.end() || !u->is_object()) return;
    out.prompt_tokens = int_field(*u, "prompt_tokens", -1);
    out.completion_tokens = int_field(*u, "completion_tokens", -1);
}

// Parses a whole (non-streamed) chat completion. Returns an error code and fills msg on bad shape.
std::error_code parse_chat(const std::string& body, ChatResult& out, std::string& msg) {
    json j;
    if (std::error_code ec = parse_body(body, "chat completion", j, msg)) return ec;
    if (!j.is_object() || !j.contains("choices") || !j["choices"].is_array() || j["choices"].empty() ||
        !j["choices"][0].is_object()) {
        msg = "chat completion has no choices[0]";
        return make_error_code(cloud_errc::bad_response);
    }
    const json& c0 = j["choices"][0];
    auto m = c0.find("message");
    if (m == c0.end() || !m->is_object()) {
        msg = "chat completion choices[0] has no message object";
        return make_error_code(cloud_errc::bad_response);
    }
    auto content = m->find("content");
    if (content != m->end() && !content->is_string() && !content->is_null()) {
        msg = "chat completion message.content is not a string";
        return make_error_code(cloud_errc::bad_response);
    }
    out.text = content != m->end() && content->is_string() ? content->get<std::string>() : "";
    out.finish_reason = str_field(c0, "finish_reason");
    out.model = str_field(j, "model");
    read_usage(j, out);
    return {};
}

// Parses one change-feed item or tombstone.
static bool parse_item(const json& j, FeedItem& it, std::string& msg) {
    if (!j.is_object() || !j.contains("id") || !(j["id"].is_string() || j["id"].is_number_integer())) {
        msg = "change item without a string or integer id";
        return false;
    }
    it.id = j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump();
    if (it.id.empty()) {
        msg = "change item with an empty id";
        return false;
    }
    it.deleted = j.contains("deleted") && j["deleted"].is_boolean() && j["deleted"].get<bool>();
    if (it.deleted) return true;
    if (!j.contains("text") || !j["text"].is_string()) {
        msg = "change item '" + it.id + "' has no string text";
        return false;
    }
    it.text = j["text"].get<std::string>();
    it.request_id = str_field(j, "request_id");
    it.document = str_field(j, "document");
    if (j.contains("source") && j["source"].is_object()) {
        it.doc_id = str_field(j["source"], "doc_id");
        it.title = str_field(j["source"], "title");
    }
    if (j.contains("created_at")) {
        const json& c = j["created_at"];
        if (c.is_number_float()) {
            // converting a double outside int64's range is undefined behaviour: absent instead
            const double d = c.get<double>();
            if (std::isfinite(d) && d >= -0x1p63 && d < 0x1p63) it.created_at = (int64_t)d;
        } else {
            it.created_at = int_field(j, "created_at", 0);
        }
    }
    return true;
}

std::error_code parse_page(const std::string& body, FeedPage& page, std::string& msg) {
    json j;
    if (std::error_code ec = parse_body(body, "change feed", j, msg)) return ec;
    if (!j.is_object() || !j.contains("items") || !j["items"].is_array()) {
        msg = "change feed page has no items array";
        return make_error_code(cloud_errc::bad_response);
    }
    auto nc = j.find("next_cursor");
    if (nc == j.end() || !(nc->is_string() || nc->is_number_integer())) {
        msg = "change feed page has no next_cursor";
        return make_error_code(cloud_errc::bad_response);
    }
    page.next_cursor = nc->is_string() ? nc->get<std::string>() : nc->dump();
    page.epoch = str_field(j, "epoch");
    auto reset = j.find("reset");
    page.reset = reset != j.end() && reset->is_boolean() && reset->get<bool>();
    page.items.clear();
    for (const json& e : j["items"]) {
        FeedItem it;
        if (!parse_item(e, it, msg)) return make_error_code(cloud_errc::bad_response);
        page.items.push_back(std::move(it));
    }
    return {};
}

std::error_code parse_source(const std::string& body, SourcePassage& out, std::string& msg) {
    json j;
    if (std::error_code ec = parse_body(body, "source", j, msg)) return ec;
    if (!j.is_object() || !j.contains("passage") || !j["passage"].is_string()) {
        msg = "source answer has no string passage";
        return make_error_code(cloud_errc::bad_response);
    }
    out.doc_id = str_field(j, "doc_id");
    out.title = str_field(j, "title");
    out.passage = j["passage"].get<std::string>();
    out.index = int_field(j, "index", 0);
    out.count = int_field(j, "count", 0);
    return {};
}

std::error_code parse_forget(const std::string& body, ForgetScope scope, int64_t& deleted, std::string& msg) {
    json j = json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        msg = "forget answer is not a JSON object";
        return make_error_code(cloud_errc::malformed_json);
    }
    deleted = scope == ForgetScope::item ? 1 : int_field(j, "deleted", 0);
    return {};
}

void StreamState::on_event(const SseEvent& ev) {
    if (err || done_marker) return;
    if (ev.data == "[DONE]") {
        done_marker = true;
        return;
    }
    json j = json::parse(ev.data, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        err = make_error_code(cloud_errc::malformed_json);
        err_msg = "SSE event data is not a JSON object";
        return;
    }
    if (j.contains("error")) {
        const json& e = j["error"];
        err = make_error_code(cloud_errc::stream_error);
        err_msg = e.is_string() ? e.get<std::string>() : e.is_object() ? str_field(e, "message") : "";
        if (err_msg.empty()) err_msg = "error object without a message";
        return;
    }
    if (result.model.empty()) result.model = str_field(j, "model");
    read_usage(j, result);
    if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) return;  // e.g. usage
    const json& c0 = j["choices"][0];
    if (!c0.is_object()) return;
    std::string fr = str_field(c0, "finish_reason");
    if (!fr.empty()) result.finish_reason = fr;
    auto d = c0.find("delta");
    if (d == c0.end() || !d->is_object()) return;
    std::string text = str_field(*d, "content");
    if (text.empty()) return;
    result.text += text;
    delivered = true;
    if (on_delta) on_delta(text);
}

}  // namespace tandem::detail
