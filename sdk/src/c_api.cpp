// The C ABI (tandem.h) over tandem::Assistant. Every entry point catches everything: a C++
// exception becomes a tandem_status (status_of below) and the handle's error message.
#include "tandem/tandem.h"

#include <sys/stat.h>

#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string>

#include "tandem/assistant.h"
#include "tandem/gguf.h"
#include "tandem/model.h"
#include "tandem/router_features.h"
#include "tandem/tokenizer.h"
#include "tandem/turbo_heads.h"

#ifndef TANDEM_VERSION
#error "TANDEM_VERSION (CMake's project version) must be defined"
#endif

// The C enum is the C++ one: event kinds cross the ABI by value.
#define TANDEM_SAME_EVENT(c, cpp) static_assert((int)(c) == (int)tandem::EventKind::cpp, #c " != EventKind::" #cpp)
TANDEM_SAME_EVENT(TANDEM_EVENT_MODEL_LOADED, ModelLoaded);
TANDEM_SAME_EVENT(TANDEM_EVENT_GPU_NOT_USED, GpuNotUsed);
TANDEM_SAME_EVENT(TANDEM_EVENT_ONLINE, Online);
TANDEM_SAME_EVENT(TANDEM_EVENT_OFFLINE, Offline);
TANDEM_SAME_EVENT(TANDEM_EVENT_MEMORY_UPDATED, MemoryUpdated);
TANDEM_SAME_EVENT(TANDEM_EVENT_MEMORY_UNAVAILABLE, MemoryUnavailable);
TANDEM_SAME_EVENT(TANDEM_EVENT_MEMORY_REQUESTED, MemoryRequested);
TANDEM_SAME_EVENT(TANDEM_EVENT_ERROR, Error);
TANDEM_SAME_EVENT(TANDEM_EVENT_MEMORY_APPLIED, MemoryApplied);
TANDEM_SAME_EVENT(TANDEM_EVENT_MEMORY_RESET, MemoryReset);
#undef TANDEM_SAME_EVENT

struct tandem_assistant {
    std::unique_ptr<tandem::Assistant> impl;
    mutable std::mutex mu;  // guards the strings below
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

template <class... E>
bool is_any(const std::exception& e) {
    return ((dynamic_cast<const E*>(&e) != nullptr) || ...);
}

// The status and message of the exception being handled (call inside a catch block).
tandem_status status_of_current(std::string* msg) {
    try {
        throw;
    } catch (const std::bad_alloc&) {
        *msg = "out of memory";
        return TANDEM_STATUS_FAILED;
    } catch (const std::exception& e) {
        *msg = e.what();
        if (is_any<tandem::CloudConfigError>(e)) return TANDEM_STATUS_CLOUD_ERROR;
        if (is_any<std::invalid_argument>(e)) return TANDEM_STATUS_INVALID_ARGUMENT;
        if (is_any<tandem::GgufError, tandem::ModelError, tandem::TokenizerError, tandem::RouterError, tandem::TurboHeadsError>(e))
            return TANDEM_STATUS_INVALID_FILE;
        return TANDEM_STATUS_FAILED;
    } catch (...) {
        *msg = "unknown error";
        return TANDEM_STATUS_FAILED;
    }
}

tandem_status fail(tandem_assistant* a, const std::string& msg, tandem_status st) {
    try {
        std::lock_guard<std::mutex> lk(a->mu);
        a->error = msg;
    } catch (...) {  // out of memory for the message: the status still says what happened
    }
    return st;
}

// Runs body(), which returns a status; any exception becomes a status and a[error].
template <class Body>
tandem_status guarded(tandem_assistant* a, Body&& body) {
    try {
        return body();
    } catch (...) {
        std::string msg;
        const tandem_status st = status_of_current(&msg);
        return fail(a, msg, st);
    }
}

// A constructor's failure: *status and the caller's error buffer.
tandem_assistant* init_failed(tandem_status st, const std::string& msg, tandem_status* status, char* err, size_t err_size) {
    if (status) *status = st;
    copy_error(msg, err, err_size);
    return nullptr;
}

bool file_exists(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
}

tandem::EventCallback wrap_events(tandem_event_cb cb, void* ud) {
    if (!cb) return {};
    return [cb, ud](const tandem::AssistantEvent& e) { cb(static_cast<tandem_event_kind>(e.kind), e.message.c_str(), ud); };
}

tandem::TextCallback wrap_text(tandem_text_cb cb, void* ud) {
    if (!cb) return {};
    return [cb, ud](std::string_view p) { return cb(p.data(), p.size(), ud) != 0; };
}

// Checks the files the config names, then creates the Assistant.
tandem_assistant* make(const tandem::AssistantConfig& cfg, tandem_event_cb cb, void* ud, tandem_status* status, char* err,
                       size_t err_size) {
    for (const std::string* path : {&cfg.model_path, &cfg.router_path})
        if (!path->empty() && !file_exists(*path))
            return init_failed(TANDEM_STATUS_FILE_NOT_FOUND, *path + ": no such file", status, err, err_size);
    try {
        auto h = std::make_unique<tandem_assistant>();
        h->impl = tandem::Assistant::create(cfg, wrap_events(cb, ud));
        if (status) *status = TANDEM_STATUS_OK;
        return h.release();
    } catch (...) {
        std::string msg;
        const tandem_status st = status_of_current(&msg);
        return init_failed(st, msg, status, err, err_size);
    }
}

// `s` copied for the calling thread, valid until its next call of the same function.
const char* thread_copy(std::string& slot, const std::string& s) {
    try {
        slot = s;
    } catch (...) {
        slot.clear();
    }
    return slot.c_str();
}

}  // namespace

extern "C" {

tandem_assistant_params tandem_assistant_default_params(void) {
    static const tandem::AssistantConfig defaults;  // the C++ defaults, not a second copy of them
    tandem_assistant_params p;
    std::memset(&p, 0, sizeof p);
    p.backend = defaults.backend.c_str();
    p.n_threads = defaults.n_threads;
    p.n_ctx = (int32_t)defaults.n_ctx;
    p.router_threshold = defaults.router_threshold;
    p.privacy_mode = defaults.privacy_mode ? 1 : 0;
    p.suggestion_tokens = defaults.suggestion_tokens;
    p.suggestion_end = defaults.suggestion_end.c_str();
    p.temperature = (float)defaults.suggestion_temperature;
    p.top_k = defaults.suggestion_top_k;
    p.top_p = (float)defaults.suggestion_top_p;
    p.seed = defaults.suggestion_seed;
    return p;
}

tandem_assistant* tandem_assistant_init(const tandem_assistant_params* p, tandem_status* status, char* error, size_t error_size) {
    if (!p || !p->model_path)
        return init_failed(TANDEM_STATUS_INVALID_ARGUMENT, "params and params->model_path are required", status, error, error_size);
    try {
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
        if (p->suggestion_end) c.suggestion_end = p->suggestion_end;
        c.suggestion_temperature = p->temperature;
        c.suggestion_top_k = p->top_k;
        c.suggestion_top_p = p->top_p;
        c.suggestion_seed = p->seed;
        if (p->n_stop > 0 && !p->stop)
            return init_failed(TANDEM_STATUS_INVALID_ARGUMENT, "params->stop is NULL with n_stop > 0", status, error, error_size);
        for (size_t i = 0; i < p->n_stop; i++) {
            if (!p->stop[i])
                return init_failed(TANDEM_STATUS_INVALID_ARGUMENT, "params->stop[" + std::to_string(i) + "] is NULL", status, error,
                                   error_size);
            c.suggestion_stop.push_back(p->stop[i]);
        }
        return make(c, p->on_event, p->event_user_data, status, error, error_size);
    } catch (...) {
        std::string msg;
        const tandem_status st = status_of_current(&msg);
        return init_failed(st, msg, status, error, error_size);
    }
}

tandem_assistant* tandem_assistant_init_from_file(const char* path, tandem_event_cb cb, void* ud, tandem_status* status,
                                                  char* error, size_t error_size) {
    if (!path) return init_failed(TANDEM_STATUS_INVALID_ARGUMENT, "config_path is NULL", status, error, error_size);
    try {
        if (!file_exists(path))
            return init_failed(TANDEM_STATUS_FILE_NOT_FOUND, std::string(path) + ": no such file", status, error, error_size);
        tandem::AssistantConfig c;
        try {
            c = tandem::AssistantConfig::from_json_file(path);
        } catch (const std::exception& e) {  // unreadable, not JSON, unknown field, wrong type
            return init_failed(TANDEM_STATUS_INVALID_FILE, e.what(), status, error, error_size);
        }
        return make(c, cb, ud, status, error, error_size);
    } catch (...) {
        std::string msg;
        const tandem_status st = status_of_current(&msg);
        return init_failed(st, msg, status, error, error_size);
    }
}

void tandem_assistant_free(tandem_assistant* a) {
    try {
        delete a;
    } catch (...) {  // a destructor that throws: nothing more can be done for this handle
    }
}

tandem_status tandem_assistant_suggest(tandem_assistant* a, const char* doc, size_t len, size_t cursor,
                                       tandem_text_cb on_text, void* ud) {
    if (!a) return TANDEM_STATUS_INVALID_ARGUMENT;
    if (!doc && len > 0) return fail(a, "document is NULL", TANDEM_STATUS_INVALID_ARGUMENT);
    if (cursor > len) return fail(a, "cursor is past the end of the document", TANDEM_STATUS_INVALID_ARGUMENT);
    return guarded(a, [&] {
        const auto r = a->impl->suggest(std::string_view(doc ? doc : "", len), cursor, wrap_text(on_text, ud));
        return r.cancelled ? TANDEM_STATUS_CANCELLED : TANDEM_STATUS_OK;
    });
}

void tandem_assistant_cancel(tandem_assistant* a) {
    if (a) guarded(a, [&] {
        a->impl->cancel();
        return TANDEM_STATUS_OK;
    });
}

tandem_status tandem_assistant_ask(tandem_assistant* a, const char* instruction, const char* selection, int32_t private_query,
                                   int32_t max_tokens, tandem_text_cb on_text, void* ud, const char** answered_by) {
    return tandem_assistant_ask_with_progress(a, instruction, selection, private_query, max_tokens, on_text, nullptr, ud,
                                              answered_by);
}

tandem_status tandem_assistant_ask_with_progress(tandem_assistant* a, const char* instruction, const char* selection,
                                                 int32_t private_query, int32_t max_tokens, tandem_text_cb on_text,
                                                 tandem_progress_cb on_progress, void* ud, const char** answered_by) {
    if (!a) return TANDEM_STATUS_INVALID_ARGUMENT;
    if (!instruction) return fail(a, "instruction is NULL", TANDEM_STATUS_INVALID_ARGUMENT);
    return guarded(a, [&] {
        tandem::AskOptions o;
        o.private_query = private_query != 0;
        if (max_tokens > 0) o.max_tokens = max_tokens;
        if (on_progress)
            o.on_prompt_progress = [on_progress, ud](int64_t done, int64_t total) { return on_progress(done, total, ud) != 0; };
        const auto r = a->impl->ask(instruction, selection ? selection : "", o, wrap_text(on_text, ud));
        {
            std::lock_guard<std::mutex> lk(a->mu);
            a->last_reason = r.reason;
        }
        if (answered_by) *answered_by = r.answered_by == "cloud" ? "cloud" : "local";
        return r.cancelled ? TANDEM_STATUS_CANCELLED : TANDEM_STATUS_OK;
    });
}

const char* tandem_assistant_last_reason(tandem_assistant* a) {
    if (!a) return "";
    thread_local std::string copy;
    std::lock_guard<std::mutex> lk(a->mu);
    return thread_copy(copy, a->last_reason);
}

tandem_status tandem_assistant_set_router_threshold(tandem_assistant* a, double t) {
    if (!a) return TANDEM_STATUS_INVALID_ARGUMENT;
    return guarded(a, [&] {
        a->impl->set_router_threshold(t);
        return TANDEM_STATUS_OK;
    });
}

tandem_status tandem_assistant_set_privacy_mode(tandem_assistant* a, int32_t on) {
    if (!a) return TANDEM_STATUS_INVALID_ARGUMENT;
    return guarded(a, [&] {
        a->impl->set_privacy_mode(on != 0);
        return TANDEM_STATUS_OK;
    });
}

tandem_status tandem_assistant_set_cloud(tandem_assistant* a, const char* url, const char* token) {
    if (!a) return TANDEM_STATUS_INVALID_ARGUMENT;
    return guarded(a, [&] {
        a->impl->set_cloud(url ? url : "", token ? token : "");
        return TANDEM_STATUS_OK;
    });
}

const char* tandem_assistant_cloud_url(tandem_assistant* a) {
    if (!a) return "";
    thread_local std::string copy;
    try {
        return thread_copy(copy, a->impl->cloud_url());
    } catch (...) {  // out of memory for the copy
        return "";
    }
}

tandem_status tandem_assistant_set_document(tandem_assistant* a, const char* document_id) {
    if (!a) return TANDEM_STATUS_INVALID_ARGUMENT;
    return guarded(a, [&] {
        a->impl->set_document(document_id ? document_id : "");
        return TANDEM_STATUS_OK;
    });
}

int64_t tandem_assistant_usage_json(tandem_assistant* a, char* buf, size_t size) {
    if (!a) return 0;
    int64_t out = 0;
    guarded(a, [&] {
        const std::string s = a->impl->usage().to_json();
        if (!buf || size < s.size() + 1) {
            out = -(int64_t)(s.size() + 1);
        } else {
            std::memcpy(buf, s.c_str(), s.size() + 1);
            out = (int64_t)s.size();
        }
        return TANDEM_STATUS_OK;
    });
    return out;
}

const char* tandem_errmsg(const tandem_assistant* a) {
    if (!a) return "invalid handle";
    thread_local std::string copy;
    std::lock_guard<std::mutex> lk(a->mu);
    return thread_copy(copy, a->error);
}

const char* tandem_version(void) { return TANDEM_VERSION; }

}  // extern "C"
