// The C ABI (tandem.h) over tandem::Assistant: every body catches everything.
#include "tandem/tandem.h"

#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "tandem/assistant.h"

struct tandem_assistant {
    std::unique_ptr<tandem::Assistant> impl;
    std::mutex mu;  // guards the strings below
    std::string error;
    std::string last_reason;
};

namespace {

void copy_error(const std::string& msg, char* buf, size_t size) {
    if (!buf || size == 0) return;
    const size_t n = std::min(msg.size(), size - 1);
    std::memcpy(buf, msg.data(), n);
    buf[n] = '\0';
}

tandem::EventCallback wrap_events(tandem_event_cb cb, void* ud) {
    if (!cb) return {};
    return [cb, ud](const tandem::AssistantEvent& e) { cb(static_cast<tandem_event_kind>(e.kind), e.message.c_str(), ud); };
}

tandem::TextCallback wrap_text(tandem_text_cb cb, void* ud) {
    if (!cb) return {};
    return [cb, ud](std::string_view p) { return cb(p.data(), p.size(), ud) != 0; };
}

tandem_status fail(tandem_assistant* a, const std::string& msg, tandem_status st = TANDEM_STATUS_FAILED) {
    std::lock_guard<std::mutex> lk(a->mu);
    a->error = msg;
    return st;
}

tandem_assistant* make(const tandem::AssistantConfig& cfg, tandem_event_cb cb, void* ud, char* err, size_t err_size) {
    try {
        auto h = std::make_unique<tandem_assistant>();
        h->impl = tandem::Assistant::create(cfg, wrap_events(cb, ud));
        return h.release();
    } catch (const std::exception& e) {
        copy_error(e.what(), err, err_size);
    } catch (...) {
        copy_error("unknown error", err, err_size);
    }
    return nullptr;
}

}  // namespace

extern "C" {

tandem_assistant_params tandem_assistant_default_params(void) {
    tandem_assistant_params p;
    std::memset(&p, 0, sizeof p);
    p.backend = "auto";
    p.n_ctx = 2048;
    p.router_threshold = -1;
    p.suggestion_tokens = 24;
    return p;
}

tandem_assistant* tandem_assistant_init(const tandem_assistant_params* p, char* error, size_t error_size) {
    if (!p || !p->model_path) {
        copy_error("params and params->model_path are required", error, error_size);
        return nullptr;
    }
    tandem::AssistantConfig c;
    c.model_path = p->model_path;
    if (p->backend) c.backend = p->backend;
    c.n_threads = p->n_threads;
    if (p->n_ctx > 0) c.n_ctx = p->n_ctx;
    if (p->memory_db) c.memory_db = p->memory_db;
    if (p->cloud_url) c.cloud_url = p->cloud_url;
    if (p->cloud_token) c.cloud_token = p->cloud_token;
    if (p->router_path) c.router_path = p->router_path;
    c.router_threshold = p->router_threshold;
    c.privacy_mode = p->privacy_mode != 0;
    if (p->suggestion_tokens > 0) c.suggestion_tokens = p->suggestion_tokens;
    return make(c, p->on_event, p->event_user_data, error, error_size);
}

tandem_assistant* tandem_assistant_init_from_file(const char* path, tandem_event_cb cb, void* ud, char* error,
                                                  size_t error_size) {
    if (!path) {
        copy_error("config_path is NULL", error, error_size);
        return nullptr;
    }
    try {
        return make(tandem::AssistantConfig::from_json_file(path), cb, ud, error, error_size);
    } catch (const std::exception& e) {
        copy_error(e.what(), error, error_size);
        return nullptr;
    }
}

void tandem_assistant_free(tandem_assistant* a) { delete a; }

tandem_status tandem_assistant_suggest(tandem_assistant* a, const char* doc, size_t len, size_t cursor,
                                       tandem_text_cb on_text, void* ud) {
    if (!a) return TANDEM_STATUS_INVALID_ARGUMENT;
    if (!doc && len > 0) return fail(a, "document is NULL", TANDEM_STATUS_INVALID_ARGUMENT);
    if (cursor > len) return fail(a, "cursor is past the end of the document", TANDEM_STATUS_INVALID_ARGUMENT);
    try {
        const auto r = a->impl->suggest(std::string_view(doc ? doc : "", len), cursor, wrap_text(on_text, ud));
        return r.cancelled ? TANDEM_STATUS_CANCELLED : TANDEM_STATUS_OK;
    } catch (const std::exception& e) {
        return fail(a, e.what());
    } catch (...) {
        return fail(a, "unknown error");
    }
}

void tandem_assistant_cancel(tandem_assistant* a) {
    if (a) a->impl->cancel();
}

tandem_status tandem_assistant_ask(tandem_assistant* a, const char* instruction, const char* selection, int32_t private_query,
                                   int32_t max_tokens, tandem_text_cb on_text, void* ud, const char** answered_by) {
    if (!a) return TANDEM_STATUS_INVALID_ARGUMENT;
    if (!instruction) return fail(a, "instruction is NULL", TANDEM_STATUS_INVALID_ARGUMENT);
    try {
        tandem::AskOptions o;
        o.private_query = private_query != 0;
        if (max_tokens > 0) o.max_tokens = max_tokens;
        const auto r = a->impl->ask(instruction, selection ? selection : "", o, wrap_text(on_text, ud));
        {
            std::lock_guard<std::mutex> lk(a->mu);
            a->last_reason = r.reason;
        }
        if (answered_by) *answered_by = r.answered_by == "cloud" ? "cloud" : "local";
        return r.cancelled ? TANDEM_STATUS_CANCELLED : TANDEM_STATUS_OK;
    } catch (const std::exception& e) {
        return fail(a, e.what());
    } catch (...) {
        return fail(a, "unknown error");
    }
}

const char* tandem_assistant_last_reason(tandem_assistant* a) {
    if (!a) return "";
    std::lock_guard<std::mutex> lk(a->mu);
    return a->last_reason.c_str();
}

tandem_status tandem_assistant_set_router_threshold(tandem_assistant* a, double t) {
    if (!a) return TANDEM_STATUS_INVALID_ARGUMENT;
    try {
        a->impl->set_router_threshold(t);
        return TANDEM_STATUS_OK;
    } catch (const std::invalid_argument& e) {
        return fail(a, e.what(), TANDEM_STATUS_INVALID_ARGUMENT);
    } catch (const std::exception& e) {
        return fail(a, e.what());
    }
}

tandem_status tandem_assistant_set_privacy_mode(tandem_assistant* a, int32_t on) {
    if (!a) return TANDEM_STATUS_INVALID_ARGUMENT;
    try {
        a->impl->set_privacy_mode(on != 0);
        return TANDEM_STATUS_OK;
    } catch (const std::exception& e) {
        return fail(a, e.what());
    }
}

int64_t tandem_assistant_usage_json(tandem_assistant* a, char* buf, size_t size) {
    if (!a) return 0;
    try {
        const tandem::UsageTotals u = a->impl->usage();
        const std::string s = u.to_json();
        if (!buf || size < s.size() + 1) return -(int64_t)(s.size() + 1);
        std::memcpy(buf, s.c_str(), s.size() + 1);
        return (int64_t)s.size();
    } catch (const std::exception& e) {
        fail(a, e.what());
        return 0;
    }
}

const char* tandem_errmsg(const tandem_assistant* a) {
    if (!a) return "invalid handle";
    return a->error.c_str();
}

const char* tandem_version(void) { return "0.1.0"; }

}  // extern "C"
