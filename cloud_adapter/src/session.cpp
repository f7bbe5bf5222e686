// Session: one logical HTTP call, Beast style. The chain is
//
//   start -> on_attempt -> (curl transfer, with on_deadline / on_idle armed)
//         -> on_transfer -> [fail -> on_backoff -> on_attempt ...] -> finish
//
// Every handler runs on the loop strand and holds the session alive through shared_from_this;
// every operation has its timer set before it starts. Errors go through fail(ec, stage), which
// retries (exponential backoff with jitter, Retry-After honoured) or finishes.
#include <algorithm>
#include <cctype>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>

#include "loop.h"

namespace tandem::detail {

using boost::system::error_code;

Session::Session(Loop& loop, HttpSpec spec, SessionHooks hooks, SessionDone done)
    : loop_(loop),
      spec_(std::move(spec)),
      hooks_(std::move(hooks)),
      done_fn_(std::move(done)),
      deadline_(loop.strand()),
      idle_(loop.strand()),
      backoff_(loop.strand()) {}

Session::~Session() {
    if (easy_) curl_easy_cleanup(easy_);  // removed from the multi before (on_transfer/on_cancel)
    if (headers_) curl_slist_free_all(headers_);
}

void Session::start() {
    loop_.n_calls++;
    asio::post(loop_.strand(), [self = shared_from_this()] {
        self->loop_.register_session(self);
        self->setup_easy();
        self->on_attempt();
    });
}

void Session::cancel(std::error_code why) {
    asio::post(loop_.strand(), [self = shared_from_this(), why] { self->on_cancel(why); });
}

// ---- the easy handle ---------------------------------------------------------------------

void Session::setup_easy() {
    const CloudConfig& cfg = loop_.cfg();
    easy_ = curl_easy_init();
    if (!easy_) return;  // on_attempt reports it
    headers_ = curl_slist_append(headers_, "Content-Type: application/json");
    headers_ = curl_slist_append(headers_, spec_.stream ? "Accept: text/event-stream" : "Accept: application/json");
    headers_ = curl_slist_append(headers_, "Expect:");  // no 100-continue round trip
    if (!loop_.auth_header().empty()) headers_ = curl_slist_append(headers_, loop_.auth_header().c_str());
    CURL* e = easy_;
    curl_easy_setopt(e, CURLOPT_URL, spec_.url.c_str());
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers_);
    if (spec_.method == "POST") {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, spec_.body.c_str());
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)spec_.body.size());
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        if (spec_.method == "DELETE") curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
    }
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)cfg.connect_timeout.count());
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, cfg.verify_tls ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, cfg.verify_tls ? 2L : 0L);
    if (!cfg.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, cfg.ca_file.c_str());
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)cfg.max_response_bytes);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf_);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Session::on_curl_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, this);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &Session::on_curl_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, this);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, &Loop::on_open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, &loop_);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, &Loop::on_close_socket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, &loop_);
    if (loop_.logging()) {
        curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
        curl_easy_setopt(e, CURLOPT_DEBUGFUNCTION, &Session::on_curl_debug);
        curl_easy_setopt(e, CURLOPT_DEBUGDATA, this);
    }
}

// ---- attempts ----------------------------------------------------------------------------

void Session::on_attempt() {
    if (done_) return;
    if (!easy_) {
        detail_ = "curl_easy_init failed";
        return fail(make_curl_error(CURLE_FAILED_INIT), "init");
    }
    ++attempt_;
    status_ = 0;
    received_ = 0;
    body_.clear();
    content_type_.clear();
    retry_after_s_ = -1;
    abort_ec_.clear();
    detail_.clear();
    errbuf_[0] = 0;
    if (hooks_.on_attempt) hooks_.on_attempt();

    // Timeouts before the operation: the whole attempt, and (streaming) the idle gap.
    deadline_.expires_after(spec_.deadline);
    deadline_.async_wait([self = shared_from_this(), a = attempt_](error_code ec) {
        if (a == self->attempt_) self->on_deadline(ec);  // not a stale timer of an earlier attempt
    });
    last_byte_ = std::chrono::steady_clock::now();
    if (spec_.idle.count() > 0) {
        idle_.expires_after(spec_.idle);
        idle_.async_wait([self = shared_from_this(), a = attempt_](error_code ec) {
            if (a == self->attempt_) self->on_idle(ec);
        });
    }
    if (attempt_ > 1) loop_.log(spec_.what + ": attempt " + std::to_string(attempt_));
    in_multi_ = true;
    loop_.add_transfer(easy_, shared_from_this());
}

void Session::on_deadline(error_code ec) {
    if (ec == asio::error::operation_aborted || done_ || !in_multi_) return;
    loop_.remove_transfer(easy_);
    abort_ec_ = make_curl_error(CURLE_OPERATION_TIMEDOUT);
    detail_ = "no complete answer within " + std::to_string(spec_.deadline.count()) + " ms";
    on_transfer(CURLE_OPERATION_TIMEDOUT);
}

void Session::on_idle(error_code ec) {
    if (ec == asio::error::operation_aborted || done_ || !in_multi_) return;
    auto quiet = std::chrono::steady_clock::now() - last_byte_;
    if (quiet < spec_.idle) {  // bytes came meanwhile: wait for the rest of the gap
        idle_.expires_after(std::chrono::duration_cast<Millis>(spec_.idle - quiet) + Millis(1));
        idle_.async_wait([self = shared_from_this(), a = attempt_](error_code e) {
            if (a == self->attempt_) self->on_idle(e);
        });
        return;
    }
    loop_.remove_transfer(easy_);
    abort_ec_ = make_curl_error(CURLE_OPERATION_TIMEDOUT);
    detail_ = "no data for " + std::to_string(spec_.idle.count()) + " ms";
    on_transfer(CURLE_OPERATION_TIMEDOUT);
}

// The transfer ended (completed, failed, or stopped by a timer). Classify, then finish/retry.
void Session::on_transfer(CURLcode rc) {
    in_multi_ = false;
    deadline_.cancel();
    idle_.cancel();
    if (done_) return;
    if (status_ == 0) curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &status_);

    std::error_code ec = abort_ec_;
    if (!ec && rc == CURLE_FILESIZE_EXCEEDED) {  // Content-Length over max_response_bytes
        ec = make_error_code(cloud_errc::response_too_large);
        detail_ = "Content-Length over " + std::to_string(loop_.cfg().max_response_bytes) + " bytes";
    } else if (!ec && rc != CURLE_OK) {
        ec = make_curl_error(rc);
        detail_ = errbuf_[0] ? errbuf_ : curl_easy_strerror(rc);
    }
    if (!ec && (status_ < 200 || status_ > 299)) {
        ec = status_ == 429                    ? make_error_code(cloud_errc::rate_limited)
             : status_ >= 500                  ? make_error_code(cloud_errc::server_error)
             : status_ == 401 || status_ == 403 ? make_error_code(cloud_errc::unauthorized)
                                               : make_error_code(cloud_errc::http_error);
        detail_ = "HTTP " + std::to_string(status_);
        // Add the server's own reason ({"error":{"message":...}} or {"error":"..."}), trimmed.
        auto j = nlohmann::json::parse(body_, nullptr, false);
        std::string why;
        if (j.is_object() && j.contains("error")) {
            const auto& e = j["error"];
            if (e.is_string()) why = e.get<std::string>();
            else if (e.is_object() && e.contains("message") && e["message"].is_string())
                why = e["message"].get<std::string>();
        }
        if (why.size() > 200) why.resize(200);
        if (!why.empty()) detail_ += ": " + why;
    }
    // Connectivity: an answer (any status) means reachable; transport failures do not.
    const bool transport = ec == cloud_cond::connection || ec == cloud_cond::timeout || ec == cloud_cond::tls;
    loop_.report_attempt(!transport, spec_.what + ": " + (ec ? detail_ : "ok"));
    if (ec) return fail(ec, "transfer");

    if (hooks_.on_complete) {
        std::string msg;
        ec = hooks_.on_complete(body_, msg);
        if (ec) {
            detail_ = msg;
            return fail(ec, "response");
        }
    }
    finish({}, "");
}

// ---- errors and retries ------------------------------------------------------------------

void Session::fail(std::error_code ec, const char* stage) {
    if (done_) return;
    const bool retryable = ec == cloud_cond::retryable || ec == cloud_errc::stream_truncated;
    std::string msg = spec_.what + ": " + stage + ": " + ec.message() + (detail_.empty() ? "" : " (" + detail_ + ")");
    const RetryPolicy& rp = loop_.cfg().retry;
    if (!retryable || attempt_ >= rp.max_attempts || (hooks_.may_retry && !hooks_.may_retry()))
        return finish(ec, msg);
    Millis delay = backoff_delay();
    if (retry_after_s_ >= 0) {
        Millis ra(retry_after_s_ * 1000);
        if (ra > rp.max_retry_after)
            return finish(ec, msg + "; Retry-After " + std::to_string(retry_after_s_) + " s is over the limit");
        delay = std::max(delay, ra);
    }
    loop_.log(msg + "; retry in " + std::to_string(delay.count()) + " ms");
    backoff_.expires_after(delay);
    backoff_.async_wait([self = shared_from_this()](error_code e) { self->on_backoff(e); });
}

void Session::on_backoff(error_code ec) {
    if (ec) return;  // cancelled: on_cancel already finished the call
    on_attempt();
}

// Backoff before attempt k+1 (k = attempts so far): base * 2^(k-1), capped at max_delay, then
// "equal jitter" (half fixed, half uniform) so clients that failed together spread out.
Millis Session::backoff_delay() {
    const RetryPolicy& rp = loop_.cfg().retry;
    double d = double(rp.base_delay.count()) * double(1ull << std::min(attempt_ - 1, 30));
    d = std::min(d, double(rp.max_delay.count()));
    return Millis(int64_t(d / 2 + loop_.uniform01() * d / 2));
}

void Session::on_cancel(std::error_code why) {
    if (done_) return;
    if (in_multi_) {
        loop_.remove_transfer(easy_);
        in_multi_ = false;
    }
    finish(why, spec_.what + ": " + why.message());
}

void Session::finish(std::error_code ec, const std::string& message) {
    if (done_) return;
    done_ = true;
    deadline_.cancel();
    idle_.cancel();
    backoff_.cancel();
    auto keep = shared_from_this();
    loop_.unregister_session(this);
    SessionDone fn = std::move(done_fn_);
    done_fn_ = nullptr;
    hooks_ = SessionHooks{};  // drop captured state early
    if (!ec) loop_.log(spec_.what + ": HTTP " + std::to_string(status_) + " after " + std::to_string(attempt_) + " attempt(s)");
    if (fn) {
        try {
            fn(ec, message, int(status_), attempt_);
        } catch (const std::exception& e) {  // a throwing callback must not kill the loop
            loop_.log(spec_.what + ": callback threw: " + e.what());
        } catch (...) {
            loop_.log(spec_.what + ": callback threw");
        }
    }
}

// ---- curl callbacks ----------------------------------------------------------------------

size_t Session::on_curl_body(char* p, size_t size, size_t n, void* userdata) {
    auto* s = static_cast<Session*>(userdata);
    const size_t len = size * n;
    s->last_byte_ = std::chrono::steady_clock::now();
    if (s->status_ == 0) curl_easy_getinfo(s->easy_, CURLINFO_RESPONSE_CODE, &s->status_);
    s->received_ += len;
    if (s->received_ > s->loop_.cfg().max_response_bytes) {
        s->abort_ec_ = make_error_code(cloud_errc::response_too_large);
        s->detail_ = "more than " + std::to_string(s->loop_.cfg().max_response_bytes) + " bytes";
        return 0;  // curl stops with CURLE_WRITE_ERROR; abort_ec_ says why
    }
    const bool ok = s->status_ >= 200 && s->status_ <= 299;
    if (ok && s->hooks_.on_chunk) {
        std::string msg;
        std::error_code ec = s->hooks_.on_chunk(std::string_view(p, len), msg);
        if (ec) {
            s->abort_ec_ = ec;
            s->detail_ = msg;
            return 0;
        }
        return len;
    }
    s->body_.append(p, len);
    return len;
}

size_t Session::on_curl_header(char* p, size_t size, size_t n, void* userdata) {
    auto* s = static_cast<Session*>(userdata);
    const size_t len = size * n;
    std::string_view line(p, len);
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.remove_suffix(1);
    s->last_byte_ = std::chrono::steady_clock::now();
    if (line.substr(0, 5) == "HTTP/") {  // a new response (e.g. after 100 Continue)
        s->retry_after_s_ = -1;
        s->content_type_.clear();
        return len;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return len;
    std::string name(line.substr(0, colon));
    for (char& c : name) c = char(std::tolower((unsigned char)c));
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    if (name == "content-type") {
        s->content_type_ = std::string(value);
    } else if (name == "retry-after") {
        // Seconds ("120") or an HTTP date ("Wed, 21 Oct 2015 07:28:00 GMT").
        std::string v(value);
        if (!v.empty() && std::all_of(v.begin(), v.end(), [](char c) { return std::isdigit((unsigned char)c); })) {
            s->retry_after_s_ = v.size() > 9 ? 999999999L : std::stol(v);
        } else {
            time_t t = curl_getdate(v.c_str(), nullptr);
            if (t != -1) s->retry_after_s_ = std::max<long>(0, long(t - std::time(nullptr)));
        }
    }
    return len;
}

int Session::on_curl_debug(CURL*, curl_infotype t, char* p, size_t n, void* userdata) {
    auto* s = static_cast<Session*>(userdata);
    const char* dir = t == CURLINFO_HEADER_OUT ? "> " : t == CURLINFO_HEADER_IN ? "< " : t == CURLINFO_TEXT ? "* " : nullptr;
    if (!dir) return 0;  // bodies are not logged
    std::string text(p, n);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    s->loop_.log(dir + text);  // Loop::log redacts the Authorization value and the token
    return 0;
}

}  // namespace tandem::detail
