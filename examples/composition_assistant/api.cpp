// Api: the HTTP handlers of the composition assistant (contract in api.h).
#include "api.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <optional>

#include "tandem/json_int.h"

namespace tandem::compose {

using json = nlohmann::json;

extern const std::string_view kWeb_index_html, kWeb_style_css, kWeb_app_js;  // page_data.cpp

// ---- JSON helpers ----------------------------------------------------------------------

json note_json(const MemoryNote& n) {
    return {{"id", n.id}, {"text", n.text}, {"doc_id", n.doc_id}, {"title", n.title}};
}

json stats_json(const GenerationStats& s) {
    return {{"prompt_tokens", s.prompt_tokens},
            {"reused_tokens", s.reused_tokens},
            {"completion_tokens", s.completion_tokens},
            {"ttft_ms", s.ttft_ms},
            {"tokens_per_s", s.tokens_per_s}};
}

json usage_json(const UsageTotals& u) {
    return json::parse(u.to_json());
}

static json notes_json(const std::vector<MemoryNote>& notes) {
    json a = json::array();
    for (const auto& n : notes) a.push_back(note_json(n));
    return a;
}

// Thrown for a bad request body; becomes a 400 naming the field.
struct BadRequest {
    std::string message;
};

static json parse_body(const std::string& body) {
    if (body.empty()) return json::object();
    json j = json::parse(body, nullptr, false);
    if (j.is_discarded()) throw BadRequest{"the body is not valid JSON"};
    if (!j.is_object()) throw BadRequest{"the body must be a JSON object"};
    return j;
}

static std::string get_string(const json& j, const char* key, bool required) {
    auto it = j.find(key);
    if (it == j.end()) {
        if (required) throw BadRequest{std::string("field '") + key + "' is required"};
        return "";
    }
    if (!it->is_string()) throw BadRequest{std::string("field '") + key + "' must be a string"};
    return it->get<std::string>();
}

static bool get_bool(const json& j, const char* key, bool fallback) {
    auto it = j.find(key);
    if (it == j.end()) return fallback;
    if (!it->is_boolean()) throw BadRequest{std::string("field '") + key + "' must be true or false"};
    return it->get<bool>();
}

// ---- the page --------------------------------------------------------------------------

const std::string& page_html() {
    static const std::string page = [] {
        std::string html(kWeb_index_html);
        auto put = [&](const std::string& marker, const std::string& text) {
            size_t at = html.find(marker);
            if (at != std::string::npos) html.replace(at, marker.size(), text);
        };
        put("<!--STYLE-->", "<style>\n" + std::string(kWeb_style_css) + "</style>");
        put("<!--SCRIPT-->", "<script>\n" + std::string(kWeb_app_js) + "</script>");
        return html;
    }();
    return page;
}

// ---- EventHub --------------------------------------------------------------------------

void EventHub::push(const AssistantEvent& e) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        events_.push_back({{"seq", ++seq_}, {"kind", event_kind_name(e.kind)}, {"message", e.message}});
        if (events_.size() > 100) events_.pop_front();
    }
    cv_.notify_all();
}

json EventHub::recent(size_t n) const {
    std::lock_guard<std::mutex> lock(mu_);
    json a = json::array();
    size_t first = events_.size() > n ? events_.size() - n : 0;
    for (size_t i = first; i < events_.size(); i++) a.push_back(events_[i]);
    return a;
}

std::vector<json> EventHub::wait_after(int64_t after_seq, int timeout_ms) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return stopped_ || seq_ > after_seq; });
    std::vector<json> out;
    for (const auto& e : events_)
        if (e["seq"].get<int64_t>() > after_seq) out.push_back(e);
    return out;
}

void EventHub::stop() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stopped_ = true;
    }
    cv_.notify_all();
}

// ---- handlers --------------------------------------------------------------------------

void Api::handle(const Request& req, Reply& reply) {
    const std::string& p = req.path;
    bool known = p == "/" || p == "/api/suggest" || p == "/api/cancel" || p == "/api/ask" || p == "/api/state" ||
                 p == "/api/knob" || p == "/api/events" || p == "/api/source" || p == "/api/cloud";
    if (!known) return reply.error(404, "no such path: " + p);
    bool get = p == "/" || p == "/api/state" || p == "/api/events" || p == "/api/source";
    if (req.method != (get ? "GET" : "POST"))
        return reply.error(405, p + " wants " + (get ? "GET" : "POST") + ", got " + req.method);
    try {
        if (p == "/") return reply.send(200, "text/html; charset=utf-8", page_html());
        if (p == "/api/state") return state(reply);
        if (p == "/api/events") return stream_events(reply);
        if (p == "/api/source") return source(req, reply);
        json body = parse_body(req.body);
        if (p == "/api/suggest") return suggest(body, reply);
        if (p == "/api/cancel") return cancel(reply);
        if (p == "/api/ask") return ask(body, reply);
        if (p == "/api/knob") return knob(body, reply);
        if (p == "/api/cloud") return cloud(body, reply);
    } catch (const BadRequest& e) {
        return reply.error(400, e.message);
    }
}

void Api::on_stop() {
    stopping_ = true;
    suggest_gen_++;
    a_.cancel();
    events_.stop();
}

void Api::suggest(const json& body, Reply& reply) {
    std::string doc = get_string(body, "document", true);
    auto it = body.find("cursor");
    size_t cursor = doc.size();
    if (it != body.end()) {
        const std::optional<int64_t> c = json_int_in(*it, 0, (int64_t)doc.size());
        if (!c)
            throw BadRequest{"field 'cursor' must be an integer byte offset in [0, " + std::to_string(doc.size()) +
                             "]"};
        cursor = (size_t)*c;
    }
    if (body.contains("document_id")) {
        try {
            a_.set_document(get_string(body, "document_id", false));
        } catch (const std::invalid_argument& e) {
            throw BadRequest{e.what()};  // names the field
        }
    }
    // The newest request wins: stop the running suggestion before starting this one.
    uint64_t mine = ++suggest_gen_;
    a_.cancel();
    if (!reply.sse_begin()) return;
    SuggestResult r;
    try {
        r = a_.suggest(doc, cursor, [&](std::string_view piece) {
            if (suggest_gen_ != mine || stopping_) return false;
            return reply.sse_event("piece", {{"text", std::string(piece)}});
        });
    } catch (const std::exception& e) {
        reply.sse_event("error", {{"message", e.what()}});
        return;
    }
    bool cancelled = r.cancelled || suggest_gen_ != mine;
    reply.sse_event("done", {{"text", r.text},
                             {"cancelled", cancelled},
                             {"memory", notes_json(r.memory)},
                             {"stats", stats_json(r.stats)}});
}

void Api::cancel(Reply& reply) {
    suggest_gen_++;
    a_.cancel();
    reply.json(200, {{"cancelled", true}});
}

void Api::ask(const json& body, Reply& reply) {
    std::string instruction = get_string(body, "instruction", true);
    if (instruction.find_first_not_of(" \t\r\n") == std::string::npos)
        throw BadRequest{"field 'instruction' must not be empty"};
    std::string selection = get_string(body, "selection", false);
    AskOptions opt;
    opt.private_query = get_bool(body, "private", false);
    opt.on_prompt_progress = [&](int64_t done, int64_t total) {  // a long selection on the local model
        return !stopping_ && reply.sse_event("progress", {{"done", done}, {"total", total}});
    };
    if (!reply.sse_begin()) return;
    AskResult r;
    try {
        r = a_.ask(instruction, selection, opt, [&](std::string_view piece) {
            if (stopping_) return false;
            return reply.sse_event("piece", {{"text", std::string(piece)}});
        });
    } catch (const std::exception& e) {
        reply.sse_event("error", {{"message", e.what()}});
        return;
    }
    reply.sse_event("done", {{"text", r.text},
                             {"answered_by", r.answered_by},
                             {"model", r.model},
                             {"reason", r.reason},
                             {"score", r.router_score},
                             {"threshold", r.router_threshold},
                             {"cancelled", r.cancelled},
                             {"stats", stats_json(r.stats)}});
}

void Api::state(Reply& reply) {
    UsageTotals u = a_.usage();
    reply.json(200, {{"online", u.online},
                     {"cloud_url", a_.cloud_url()},
                     {"backend", u.backend},
                     {"threshold", a_.router_threshold()},
                     {"privacy", privacy_.load()},
                     {"usage", usage_json(u)},
                     {"memory", notes_json(a_.memory_notes(20))},
                     {"events", events_.recent(20)}});
}

void Api::knob(const json& body, Reply& reply) {
    auto t = body.find("threshold");
    if (t != body.end()) {
        if (!t->is_number() || t->get<double>() < 0 || t->get<double>() > 1)
            throw BadRequest{"field 'threshold' must be a number in [0, 1]"};
        a_.set_router_threshold(t->get<double>());
    }
    if (body.contains("privacy")) {
        privacy_ = get_bool(body, "privacy", false);
        a_.set_privacy_mode(privacy_);
    }
    reply.json(200, {{"threshold", a_.router_threshold()}, {"privacy", privacy_.load()}});
}

std::string url_site(const std::string& url) {
    const size_t s = url.find("://");
    if (s == std::string::npos) return "";
    const size_t a = s + 3, end = std::min(url.find_first_of("/?#", a), url.size());
    std::string host = url.substr(a, end - a);
    const size_t at = host.rfind('@');  // user info: the host is what follows the last '@'
    if (at != std::string::npos) host.erase(0, at + 1);
    size_t port = host.find(':');
    if (!host.empty() && host[0] == '[') {  // an IPv6 literal: the port follows the ']'
        const size_t close = host.find(']');
        port = close == std::string::npos ? std::string::npos : close + 1;
    }
    if (port != std::string::npos) host.resize(port);
    for (char& c : host) c = (char)std::tolower((unsigned char)c);
    std::string scheme = url.substr(0, s);
    for (char& c : scheme) c = (char)std::tolower((unsigned char)c);
    return scheme + "://" + host;
}

bool token_may_go_to(const std::string& url, const std::string& token_site) {
    const std::string site = url_site(url);
    const bool http = site.rfind("http://", 0) == 0 || site.rfind("https://", 0) == 0;
    return url.empty() || site == token_site || !http;
}

void Api::cloud(const json& body, Reply& reply) {
    const std::string url = get_string(body, "url", true);
    std::string token;
    if (body.contains("token")) token = get_string(body, "token", false);
    else if (token_may_go_to(url, token_site_)) token = cloud_token_;
    else if (!cloud_token_.empty())  // the app's token never leaves for another site on a page request
        throw BadRequest{"the app's cloud token is sent only to " + token_site_ + "; give this cloud's own token " +
                         "(\"token\": \"\" for none)"};
    try {
        a_.set_cloud(url, token);
    } catch (const CloudConfigError& e) {
        throw BadRequest{std::string("the cloud settings were rejected: ") + e.what()};
    }
    reply.json(200, {{"cloud_url", a_.cloud_url()}});
}

void Api::source(const Request& req, Reply& reply) {
    auto q = [&](const char* k) { return req.query.count(k) ? req.query.at(k) : std::string(); };
    MemoryNote note;
    note.doc_id = q("doc_id");
    note.text = q("note");
    if (note.doc_id.empty()) throw BadRequest{"query parameter 'doc_id' is required"};
    NoteSource s;
    try {
        s = a_.note_source(note);
    } catch (const std::exception& e) {
        return reply.error(503, std::string("the source cannot be shown: ") + e.what());
    }
    reply.json(200, {{"doc_id", s.doc_id}, {"title", s.title}, {"passage", s.passage}, {"index", s.index}, {"count", s.count}});
}

void Api::stream_events(Reply& reply) {
    if (!reply.sse_begin()) return;
    int64_t last = 0;
    json first = events_.recent(20);
    for (const auto& e : first) {
        if (!reply.sse_event("event", e)) return;
        last = e["seq"].get<int64_t>();
    }
    while (!stopping_) {
        std::vector<json> batch = events_.wait_after(last, 10000);
        if (stopping_) return;
        if (batch.empty() && !reply.sse_ping()) return;
        for (const auto& e : batch) {
            if (!reply.sse_event("event", e)) return;
            last = e["seq"].get<int64_t>();
        }
    }
}

}  // namespace tandem::compose
