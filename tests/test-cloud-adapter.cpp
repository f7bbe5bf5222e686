// Tests of tandem::CloudClient (cloud_adapter/) over real HTTP on 127.0.0.1 against
// FaultServer (tests/fault_server.h), which breaks responses on purpose. Every wait is bounded:
// a call that does not finish in time fails the test instead of hanging it.
#include <ostream>  // before doctest: it prints std::error_code

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>

#include "fault_server.h"
#include "tandem/cloud_adapter.h"
#include "test_util.h"

using namespace tandem;
using tandem_test::Fault;
using tandem_test::FaultReply;
using tandem_test::FaultRequest;
using tandem_test::FaultServer;
using Clock = std::chrono::steady_clock;

namespace {

// Fast retries so the tests run quickly; each test overrides what it checks.
CloudConfig fast_config(const std::string& url) {
    CloudConfig c;
    c.base_url = url;
    c.token = "tok-S3CRET-123";
    c.retry.base_delay = Millis(5);
    c.retry.max_delay = Millis(50);
    c.request_timeout = Millis(3000);
    c.connect_timeout = Millis(1000);
    return c;
}

// Starts a call and waits at most `limit` for its callback; FAILs (instead of hanging) otherwise.
template <class T, class Start>
Outcome<T> await(Start&& start, std::chrono::milliseconds limit = std::chrono::milliseconds(8000)) {
    OutcomeWait<T> w = outcome_wait<T>();
    start(w.callback);  // a second call would throw
    if (w.future.wait_for(limit) != std::future_status::ready) {
        FAIL("call did not finish within " << limit.count() << " ms");
    }
    return w.future.get();
}

ChatRequest hello() {
    ChatRequest r;
    r.model = "m";
    r.messages = {{"user", "Say hi"}};
    r.max_tokens = 8;
    return r;
}

std::string chat_json(const std::string& text) {
    return R"({"id":"c1","model":"cloud-1","choices":[{"index":0,"message":{"role":"assistant","content":")" + text +
           R"("},"finish_reason":"stop"}]})";
}

std::string delta_event(const std::string& text) {
    return "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" + text + "\"}}]}\n\n";
}

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace

// ---- errors and config -------------------------------------------------------------------

TEST_CASE("cloud: error codes map to conditions") {
    CHECK(make_curl_error(7 /* COULDNT_CONNECT */) == cloud_cond::connection);
    CHECK(make_curl_error(7) == cloud_cond::retryable);
    CHECK(make_curl_error(28 /* OPERATION_TIMEDOUT */) == cloud_cond::timeout);
    CHECK(make_curl_error(60 /* PEER_FAILED_VERIFICATION */) == cloud_cond::tls);
    CHECK(make_curl_error(60) != cloud_cond::retryable);
    CHECK(make_error_code(cloud_errc::server_error) == cloud_cond::retryable);
    CHECK(make_error_code(cloud_errc::rate_limited) == cloud_cond::retryable);
    CHECK(make_error_code(cloud_errc::malformed_json) != cloud_cond::retryable);
    CHECK(make_error_code(cloud_errc::shut_down) == cloud_cond::cancelled);
    CHECK(make_curl_error(7).message().find("connect") != std::string::npos);
}

TEST_CASE("cloud: bad configs are rejected") {
    CloudConfig c;
    c.base_url = "ftp://x";
    CHECK_THROWS_AS(CloudClient{c}, std::invalid_argument);
    c.base_url = "http://127.0.0.1:1";
    c.token = "abc\r\nX-Evil: 1";
    CHECK_THROWS_AS(CloudClient{c}, std::invalid_argument);
}

TEST_CASE("cloud: redact_secrets hides Authorization values and the token") {
    std::string s = redact_secrets("> POST /x\r\nauthorization: Bearer abc\r\nX: abc-tail abc\r\n", "abc");
    CHECK(s.find("abc") == std::string::npos);
    CHECK(s.find("authorization: <redacted>\r\n") != std::string::npos);
    CHECK(s.find("X: <redacted>-tail <redacted>") != std::string::npos);
}

// ---- chat, keep-alive, auth --------------------------------------------------------------

TEST_CASE("cloud: plain chat sends the OpenAI body and the bearer token, and parses the answer") {
    FaultServer srv([](const FaultRequest&) { return FaultReply{200, "application/json", {}, chat_json("Hi there")}; });
    CloudClient cli(fast_config(srv.url()));
    auto o = await<ChatResult>([&](auto cb) { cli.chat(hello(), cb); });
    REQUIRE_MESSAGE(!o.ec, o.message);
    CHECK(o.value.text == "Hi there");
    CHECK(o.value.finish_reason == "stop");
    CHECK(o.value.model == "cloud-1");
    CHECK(o.http_status == 200);
    auto log = srv.log();
    REQUIRE(log.size() == 1);
    CHECK(log[0].method == "POST");
    CHECK(log[0].target == "/v1/chat/completions");
    CHECK(log[0].authorization == "Bearer tok-S3CRET-123");
    CHECK(log[0].body.find("\"stream\":false") != std::string::npos);
    CHECK(log[0].body.find("\"content\":\"Say hi\"") != std::string::npos);
    CHECK(log[0].body.find("\"max_tokens\":8") != std::string::npos);
}

TEST_CASE("cloud: keep-alive reuses one connection for sequential calls") {
    FaultServer srv([](const FaultRequest&) { return FaultReply{200, "application/json", {}, chat_json("ok")}; });
    CloudClient cli(fast_config(srv.url()));
    for (int i = 0; i < 10; ++i) {
        auto o = await<ChatResult>([&](auto cb) { cli.chat(hello(), cb); });
        REQUIRE_MESSAGE(!o.ec, o.message);
    }
    CHECK(srv.requests() == 10);
    CHECK(srv.connections() == 1);
    CHECK(cli.stats().connections_opened == 1);
    CHECK(cli.stats().attempts == 10);
}

TEST_CASE("cloud: a server that closes after each answer still works (new connection per call)") {
    FaultServer srv([](const FaultRequest&) {
        FaultReply r{200, "application/json", {}, chat_json("ok")};
        r.keep_alive = false;
        return r;
    });
    CloudClient cli(fast_config(srv.url()));
    for (int i = 0; i < 3; ++i) REQUIRE(!await<ChatResult>([&](auto cb) { cli.chat(hello(), cb); }).ec);
    CHECK(srv.connections() == 3);
}

TEST_CASE("cloud: 401 is unauthorized, not retried, and the message never holds the token") {
    FaultServer srv([](const FaultRequest&) {
        return FaultReply{401, "application/json", {}, R"({"error":{"message":"bad token"}})"};
    });
    std::vector<std::string> lines;
    std::mutex mu;
    CloudConfig cfg = fast_config(srv.url());
    cfg.debug_log = [&](const std::string& l) {
        std::lock_guard<std::mutex> lk(mu);
        lines.push_back(l);
    };
    CloudClient cli(cfg);
    auto o = await<ChatResult>([&](auto cb) { cli.chat(hello(), cb); });
    CHECK(o.ec == cloud_errc::unauthorized);
    CHECK(o.attempts == 1);
    CHECK(o.message.find("bad token") != std::string::npos);
    CHECK(o.message.find("S3CRET") == std::string::npos);
    std::lock_guard<std::mutex> lk(mu);
    bool saw_auth_header = false;
    for (auto& l : lines) {
        CHECK_MESSAGE(l.find("S3CRET") == std::string::npos, l);
        if (l.find("Authorization: <redacted>") != std::string::npos) saw_auth_header = true;
    }
    CHECK(saw_auth_header);  // the header was logged, with its value hidden
}

// ---- retries -----------------------------------------------------------------------------

TEST_CASE("cloud: 5xx is retried with backoff until it succeeds") {
    FaultServer srv([](const FaultRequest& r) {
        if (r.index <= 2) return FaultReply{r.index == 1 ? 500 : 503, "application/json", {}, "{}"};
        return FaultReply{200, "application/json", {}, chat_json("third time")};
    });
    CloudClient cli(fast_config(srv.url()));
    auto o = await<ChatResult>([&](auto cb) { cli.chat(hello(), cb); });
    REQUIRE_MESSAGE(!o.ec, o.message);
    CHECK(o.value.text == "third time");
    CHECK(o.attempts == 3);
    CHECK(srv.requests() == 3);
}

TEST_CASE("cloud: retries stop at max_attempts with the typed error") {
    FaultServer srv([](const FaultRequest&) { return FaultReply{500, "application/json", {}, R"({"error":"boom"})"}; });
    CloudConfig cfg = fast_config(srv.url());
    cfg.retry.max_attempts = 3;
    CloudClient cli(cfg);
    auto o = await<ChatResult>([&](auto cb) { cli.chat(hello(), cb); });
    CHECK(o.ec == cloud_errc::server_error);
    CHECK(o.attempts == 3);
    CHECK(o.http_status == 500);
    CHECK(o.message.find("boom") != std::string::npos);
    CHECK(srv.requests() == 3);
}

TEST_CASE("cloud: exponential backoff grows between attempts") {
    FaultServer srv([](const FaultRequest&) { return FaultReply{502, "text/plain", {}, "no"}; });
    CloudConfig cfg = fast_config(srv.url());
    cfg.retry.max_attempts = 4;
    cfg.retry.base_delay = Millis(80);
    cfg.retry.max_delay = Millis(10000);
    CloudClient cli(cfg);
    auto o = await<ChatResult>([&](auto cb) { cli.chat(hello(), cb); });
    CHECK(o.ec == cloud_errc::server_error);
    auto log = srv.log();
    REQUIRE(log.size() == 4);
    // Gaps are in [d/2, d] for d = 80, 160, 320 ms (plus scheduling slack).
    double g1 = log[1].t_ms - log[0].t_ms, g2 = log[2].t_ms - log[1].t_ms, g3 = log[3].t_ms - log[2].t_ms;
    CHECK(g1 >= 39);
    CHECK(g2 >= 79);
    CHECK(g3 >= 159);
    CHECK(g3 < 1000);
}

TEST_CASE("cloud: 429 honours Retry-After in seconds") {
    FaultServer srv([](const FaultRequest& r) {
        if (r.index == 1) return FaultReply{429, "application/json", {{"Retry-After", "1"}}, "{}"};
        return FaultReply{200, "application/json", {}, chat_json("after wait")};
    });
    CloudClient cli(fast_config(srv.url()));  // base delay 5 ms: only Retry-After explains a 1 s gap
    auto o = await<ChatResult>([&](auto cb) { cli.chat(hello(), cb); });
    REQUIRE_MESSAGE(!o.ec, o.message);
    CHECK(o.attempts == 2);
    auto log = srv.log();
    REQUIRE(log.size() == 2);
    CHECK(log[1].t_ms - log[0].t_ms >= 990);
    CHECK(log[1].t_ms - log[0].t_ms < 3000);
}

TEST_CASE("cloud: 503 honours Retry-After as an HTTP date") {
    FaultServer srv([](const FaultRequest& r) {
        if (r.index == 1) {
            std::time_t t = std::time(nullptr) + 2;
            char buf[64];
            std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", std::gmtime(&t));
            return FaultReply{503, "application/json", {{"Retry-After", buf}}, "{}"};
        }
        return FaultReply{200, "application/json", {}, chat_json("ok")};
    });
    CloudClient cli(fast_config(srv.url()));
    auto o = await<ChatResult>([&](auto cb) { cli.chat(hello(), cb); });
    REQUIRE_MESSAGE(!o.ec, o.message);
    auto log = srv.log();
    REQUIRE(log.size() == 2);
    CHECK(log[1].t_ms - log[0].t_ms >= 990);  // date has 1 s resolution: 1..2 s ahead
}

TEST_CASE("cloud: a Retry-After beyond the limit ends the call at once with rate_limited") {
    FaultServer srv([](const FaultRequest&) { return FaultReply{429, "application/json", {{"Retry-After", "3600"}}, "{}"}; });
    CloudClient cli(fast_config(srv.url()));
    auto t0 = Clock::now();
    auto o = await<ChatResult>([&](auto cb) { cli.chat(hello(), cb); });
    CHECK(o.ec == cloud_errc::rate_limited);
    CHECK(o.attempts == 1);
    CHECK(o.message.find("Retry-After") != std::string::npos);
    CHECK(ms_since(t0) < 1000);
}

TEST_CASE("cloud: a connection dropped mid-body is retried and the answer arrives whole") {
    FaultServer srv([](const FaultRequest& r) {
        FaultReply rep{200, "application/json", {}, chat_json(std::string(5000, 'x'))};
        if (r.index == 1) rep.fault = Fault::drop_mid_body;
        return rep;
    });
    CloudClient cli(fast_config(srv.url()));
    auto o = await<ChatResult>([&](auto cb) { cli.chat(hello(), cb); });
    REQUIRE_MESSAGE(!o.ec, o.message);
    CHECK(o.value.text == std::string(5000, 'x'));
    CHECK(o.attempts == 2);
}

TEST_CASE("cloud: a server that always drops gives a connection error after max_attempts") {
    FaultServer srv([](const FaultRequest&) {
        FaultReply rep{200, "application/json", {}, chat_json("never whole")};
        rep.fault = Fault::drop_mid_body;
        return rep;
    });
    CloudClient cli(fast_config(srv.url()));
    auto o = await<ChatResult>([&](auto cb) { cli.chat(hello(), cb); });
    CHECK(o.ec == cloud_cond::connection);
    CHECK(o.attempts == 4);
}

TEST_CASE("cloud: connection refused is a connection error") {
    int port;
    {
        FaultServer gone([](const FaultRequest&) { return FaultReply{}; });
        port = gone.port();
    }
    CloudConfig cfg = fast_config("http://127.0.0.1:" + std::to_string(port));
    cfg.retry.max_attempts = 2;
    CloudClient cli(cfg);
    auto o = await<Nothing>([&](auto cb) { cli.post_memory_request({"r1", "ctx", 4, ""}, cb); });
    CHECK(o.ec == cloud_cond::connection);
    CHECK(o.ec.category() == curl_category());
    CHECK(o.attempts == 2);
}

// ---- bad bodies --------------------------------------------------------------------------

TEST_CASE("cloud: invalid JSON is a typed error, not retried") {
    FaultServer srv([](const FaultRequest&) { return FaultReply{200, "application/json", {}, "{\"choices\": [tru"}; });
    CloudClient cli(fast_config(srv.url()));
    auto o = await<ChatResult>([&](auto cb) { cli.chat(hello(), cb); });
    CHECK(o.ec == cloud_errc::malformed_json);
    CHECK(o.attempts == 1);
    auto p = await<FeedPage>([&](auto cb) { cli.get_changes("", 10, 0, cb); });
    CHECK(p.ec == cloud_errc::malformed_json);
}

TEST_CASE("cloud: JSON of the wrong shape is bad_response") {
    const char* bodies[] = {"[]", "{}", R"({"choices":[]})", R"({"choices":[{"message":{"content":5}}]})",
                            R"({"items":{},"next_cursor":"1"})", R"({"items":[{"text":"no id"}],"next_cursor":"1"})",
                            R"({"items":[{"id":"a"}],"next_cursor":"1"})", R"({"items":[]})"};
    for (const char* b : bodies) {
        FaultServer srv([b](const FaultRequest&) { return FaultReply{200, "application/json", {}, b}; });
        CloudClient cli(fast_config(srv.url()));
        auto o = await<ChatResult>([&](auto cb) { cli.chat(hello(), cb); });
        CHECK_MESSAGE(o.ec == cloud_errc::bad_response, b);
        auto p = await<FeedPage>([&](auto cb) { cli.get_changes("", 10, 0, cb); });
        CHECK_MESSAGE(p.ec == cloud_errc::bad_response, b);
    }
}

TEST_CASE("cloud: responses over max_response_bytes fail, with and without Content-Length") {
    FaultServer srv([](const FaultRequest& r) {
        FaultReply rep{200, "application/json", {}, chat_json(std::string(20000, 'y'))};
        if (r.target.find("changes") != std::string::npos) {  // chunked: no Content-Length to check
            rep.fault = Fault::sse;
            rep.chunks.assign(40, std::string(1000, ' '));
        }
        return rep;
    });
    CloudConfig cfg = fast_config(srv.url());
    cfg.max_response_bytes = 10000;
    CloudClient cli(cfg);
    auto o = await<ChatResult>([&](auto cb) { cli.chat(hello(), cb); });
    CHECK_MESSAGE(o.ec == cloud_errc::response_too_large, o.message);
    CHECK(o.attempts == 1);
    auto p = await<FeedPage>([&](auto cb) { cli.get_changes("", 10, 0, cb); });
    CHECK_MESSAGE(p.ec == cloud_errc::response_too_large, p.message);
}

TEST_CASE("cloud: large bodies arrive complete (socket drained on every wake-up)") {
    std::string big(3 << 20, 'z');
    FaultServer srv([&](const FaultRequest&) { return FaultReply{200, "application/json", {}, chat_json(big)}; });
    CloudClient cli(fast_config(srv.url()));
    auto t0 = Clock::now();
    auto o = await<ChatResult>([&](auto cb) { cli.chat(hello(), cb); });
    REQUIRE_MESSAGE(!o.ec, o.message);
    CHECK(o.value.text.size() == big.size());
    CHECK(ms_since(t0) < 3000);
}

// ---- timeouts and cancellation -----------------------------------------------------------

TEST_CASE("cloud: a slow server hits the per-request timeout") {
    FaultServer srv([](const FaultRequest&) {
        FaultReply r{200, "application/json", {}, chat_json("late")};
        r.delay_ms = 5000;
        return r;
    });
    CloudConfig cfg = fast_config(srv.url());
    cfg.request_timeout = Millis(300);
    cfg.retry.max_attempts = 2;
    CloudClient cli(cfg);
    auto t0 = Clock::now();
    auto o = await<ChatResult>([&](auto cb) { cli.chat(hello(), cb); });
    CHECK(o.ec == cloud_cond::timeout);
    CHECK(o.attempts == 2);
    CHECK(ms_since(t0) >= 590);
    CHECK(ms_since(t0) < 2000);
}

TEST_CASE("cloud: a slow trickle within the timeout succeeds") {
    FaultServer srv([](const FaultRequest&) {
        FaultReply r{200, "application/json", {}, chat_json("slow but fine")};
        r.fault = Fault::trickle;
        r.chunk_bytes = 8;
        r.gap_ms = 10;
        return r;
    });
    CloudClient cli(fast_config(srv.url()));
    auto o = await<ChatResult>([&](auto cb) { cli.chat(hello(), cb); });
    REQUIRE_MESSAGE(!o.ec, o.message);
    CHECK(o.value.text == "slow but fine");
}

TEST_CASE("cloud: cancel() ends an in-flight call promptly with cancelled") {
    FaultServer srv([](const FaultRequest&) {
        FaultReply r{200, "application/json", {}, chat_json("never seen")};
        r.delay_ms = 10000;
        return r;
    });
    CloudClient cli(fast_config(srv.url()));
    RequestHandle h;
    auto t0 = Clock::now();
    auto o = await<ChatResult>([&](auto cb) {
        h = cli.chat(hello(), cb);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        h.cancel();
    });
    CHECK(o.ec == cloud_errc::cancelled);
    CHECK(o.ec == cloud_cond::cancelled);
    CHECK(ms_since(t0) < 1000);
    h.cancel();  // again: a no-op
}

TEST_CASE("cloud: cancel() during the backoff wait is prompt too") {
    FaultServer srv([](const FaultRequest&) { return FaultReply{500, "application/json", {}, "{}"}; });
    CloudConfig cfg = fast_config(srv.url());
    cfg.retry.base_delay = Millis(20000);
    cfg.retry.max_delay = Millis(20000);
    CloudClient cli(cfg);
    RequestHandle h;
    auto t0 = Clock::now();
    auto o = await<ChatResult>([&](auto cb) {
        h = cli.chat(hello(), cb);
        while (srv.requests() < 1) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        h.cancel();
    });
    CHECK(o.ec == cloud_errc::cancelled);
    CHECK(ms_since(t0) < 2000);
    CHECK(srv.requests() == 1);
}

TEST_CASE("cloud: destroying the client ends pending calls with shut_down, promptly") {
    FaultServer srv([](const FaultRequest&) {
        FaultReply r{200, "application/json", {}, chat_json("x")};
        r.delay_ms = 10000;
        return r;
    });
    OutcomeWait<ChatResult> w = outcome_wait<ChatResult>();
    auto t0 = Clock::now();
    {
        CloudClient cli(fast_config(srv.url()));
        cli.chat(hello(), w.callback);
        while (srv.requests() < 1) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    REQUIRE(w.future.wait_for(std::chrono::seconds(1)) == std::future_status::ready);
    CHECK(w.future.get().ec == cloud_errc::shut_down);
    CHECK(ms_since(t0) < 2000);
}

TEST_CASE("cloud: many concurrent calls on the one loop thread all complete") {
    FaultServer srv([](const FaultRequest& r) {
        FaultReply rep{200, "application/json", {}, chat_json("n" + std::to_string(r.index))};
        rep.delay_ms = 50;
        if (r.index % 5 == 0) rep.status = 500;  // some get retried
        return rep;
    });
    CloudClient cli(fast_config(srv.url()));
    const int n = 40;
    std::atomic<int> ok{0}, done{0};
    std::promise<void> all;
    for (int i = 0; i < n; ++i)
        cli.chat(hello(), [&](Outcome<ChatResult> o) {
            if (!o.ec) ++ok;
            if (++done == n) all.set_value();
        });
    REQUIRE(all.get_future().wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(ok == n);
    CHECK(cli.stats().calls == n);
    CHECK(cli.stats().attempts > n);
}

// ---- streaming ---------------------------------------------------------------------------

TEST_CASE("cloud: streaming chat delivers deltas split at arbitrary byte boundaries") {
    std::string stream = ": keep-alive\r\n\r\n" + delta_event("Hel") + delta_event("lo, ") + delta_event("world") +
                         "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\r\n\r\n"
                         "data: [DONE]\n\n";
    FaultServer srv([&](const FaultRequest&) {
        FaultReply r{200, "text/event-stream", {}, ""};
        r.fault = Fault::sse;
        for (size_t i = 0; i < stream.size(); i += 7) r.chunks.push_back(stream.substr(i, 7));
        r.gap_ms = 1;
        return r;
    });
    CloudClient cli(fast_config(srv.url()));
    std::vector<std::string> deltas;
    auto o = await<ChatResult>([&](auto cb) {
        cli.chat_stream(hello(), [&](std::string_view d) { deltas.emplace_back(d); }, cb);
    });
    REQUIRE_MESSAGE(!o.ec, o.message);
    CHECK(deltas == std::vector<std::string>{"Hel", "lo, ", "world"});
    CHECK(o.value.text == "Hello, world");
    CHECK(o.value.finish_reason == "stop");
    auto log = srv.log();
    CHECK(log[0].body.find("\"stream\":true") != std::string::npos);
    CHECK(log[0].accept == "text/event-stream");
}

TEST_CASE("cloud: an error object in the stream is stream_error") {
    FaultServer srv([](const FaultRequest&) {
        FaultReply r{200, "text/event-stream", {}, ""};
        r.fault = Fault::sse;
        r.chunks = {delta_event("par"), "data: {\"error\":{\"message\":\"model overloaded\"}}\n\n"};
        return r;
    });
    CloudClient cli(fast_config(srv.url()));
    auto o = await<ChatResult>([&](auto cb) { cli.chat_stream(hello(), nullptr, cb); });
    CHECK(o.ec == cloud_errc::stream_error);
    CHECK(o.message.find("model overloaded") != std::string::npos);
    CHECK(o.value.text == "par");
    CHECK(o.attempts == 1);
}

TEST_CASE("cloud: a stream truncated before any text is retried, after text it is reported") {
    SUBCASE("before text: retried, no text repeated") {
        FaultServer srv([](const FaultRequest& r) {
            FaultReply rep{200, "text/event-stream", {}, ""};
            rep.fault = r.index == 1 ? Fault::sse_truncated : Fault::sse;
            if (r.index == 1) rep.chunks = {": starting\n\n"};
            else rep.chunks = {delta_event("A"), delta_event("B"), "data: [DONE]\n\n"};
            return rep;
        });
        CloudClient cli(fast_config(srv.url()));
        std::string seen;
        auto o = await<ChatResult>([&](auto cb) {
            cli.chat_stream(hello(), [&](std::string_view d) { seen += d; }, cb);
        });
        REQUIRE_MESSAGE(!o.ec, o.message);
        CHECK(seen == "AB");
        CHECK(o.attempts == 2);
    }
    SUBCASE("after text: stream_truncated, the partial text kept, no retry") {
        FaultServer srv([](const FaultRequest&) {
            FaultReply rep{200, "text/event-stream", {}, ""};
            rep.fault = Fault::sse_truncated;
            rep.chunks = {delta_event("A"), delta_event("B"), "data: {\"cho"};
            return rep;
        });
        CloudClient cli(fast_config(srv.url()));
        std::string seen;
        auto o = await<ChatResult>([&](auto cb) {
            cli.chat_stream(hello(), [&](std::string_view d) { seen += d; }, cb);
        });
        CHECK(o.ec == cloud_errc::stream_truncated);
        CHECK(seen == "AB");
        CHECK(o.value.text == "AB");
        CHECK(o.attempts == 1);
        CHECK(srv.requests() == 1);
    }
    SUBCASE("cleanly ended body without [DONE] or finish_reason: stream_truncated") {
        FaultServer srv([](const FaultRequest&) {
            FaultReply rep{200, "text/event-stream", {}, ""};
            rep.fault = Fault::sse;
            rep.chunks = {delta_event("A")};
            return rep;
        });
        CloudClient cli(fast_config(srv.url()));
        auto o = await<ChatResult>([&](auto cb) { cli.chat_stream(hello(), nullptr, cb); });
        CHECK(o.ec == cloud_errc::stream_truncated);
        CHECK(o.value.text == "A");
    }
}

TEST_CASE("cloud: streaming idle timeout fires on a stalled stream, not on a slow one") {
    FaultServer srv([](const FaultRequest& r) {
        FaultReply rep{200, "text/event-stream", {}, ""};
        rep.fault = Fault::sse;
        rep.chunks = {delta_event("x"), delta_event("y"), "data: [DONE]\n\n"};
        rep.gap_ms = r.index == 1 ? 100 : 1500;  // first: steady trickle; second: stalls
        return rep;
    });
    CloudConfig cfg = fast_config(srv.url());
    cfg.stream_idle_timeout = Millis(400);
    CloudClient cli(cfg);
    auto o = await<ChatResult>([&](auto cb) { cli.chat_stream(hello(), nullptr, cb); });
    REQUIRE_MESSAGE(!o.ec, o.message);
    CHECK(o.value.text == "xy");
    auto t0 = Clock::now();
    auto s = await<ChatResult>([&](auto cb) { cli.chat_stream(hello(), nullptr, cb); });
    CHECK(s.ec == cloud_errc::stream_truncated);  // "x" was delivered, then silence
    CHECK(s.message.find("no data for 400 ms") != std::string::npos);
    CHECK(ms_since(t0) < 1400);
}

TEST_CASE("cloud: a server that ignores stream=true and answers JSON still works") {
    FaultServer srv([](const FaultRequest&) { return FaultReply{200, "application/json", {}, chat_json("whole")}; });
    CloudClient cli(fast_config(srv.url()));
    std::string seen;
    auto o = await<ChatResult>([&](auto cb) { cli.chat_stream(hello(), [&](std::string_view d) { seen += d; }, cb); });
    REQUIRE_MESSAGE(!o.ec, o.message);
    CHECK(seen == "whole");
}

// ---- memory requests and the change feed -------------------------------------------------

TEST_CASE("cloud: memory requests keep their request_id across retries") {
    FaultServer srv([](const FaultRequest& r) {
        if (r.index == 1) {
            FaultReply rep{202, "application/json", {}, "{\"status\":\"accepted\"}"};
            rep.fault = Fault::drop_mid_body;  // the server may have seen it: resend must be idempotent
            return rep;
        }
        return FaultReply{202, "application/json", {}, "{}"};
    });
    CloudClient cli(fast_config(srv.url()));
    auto o = await<Nothing>([&](auto cb) { cli.post_memory_request({"req-42", "The Roman \"aqueducts\"", 5, ""}, cb); });
    REQUIRE_MESSAGE(!o.ec, o.message);
    CHECK(o.http_status == 202);
    auto log = srv.log();
    REQUIRE(log.size() == 2);
    for (auto& r : log) {
        CHECK(r.target == "/v1/memory/requests");
        CHECK(r.body == R"({"context":"The Roman \"aqueducts\"","max_items":5,"request_id":"req-42"})");
    }
    auto bad = await<Nothing>([&](auto cb) { cli.post_memory_request({"", "x", 5, ""}, cb); });
    CHECK(bad.ec == cloud_errc::invalid_argument);
}

TEST_CASE("cloud: the change feed parses items, tombstones and cursors; the query is escaped") {
    FaultServer srv([](const FaultRequest& r) {
        if (r.target.find("since=7") != std::string::npos)
            return FaultReply{200, "application/json", {}, R"({"items":[],"next_cursor":7})"};
        return FaultReply{200, "application/json", {},
                          R"({"items":[{"id":"m1","request_id":"req-42","text":"Aqueducts used gravity.",
                             "source":{"doc_id":"d9","title":"Rome"},"created_at":1700000000123},
                             {"id":"m0","deleted":true}],"next_cursor":"7"})"};
    });
    CloudClient cli(fast_config(srv.url()));
    auto p = await<FeedPage>([&](auto cb) { cli.get_changes("a b&c", 50, 2, cb); });
    REQUIRE_MESSAGE(!p.ec, p.message);
    REQUIRE(p.value.items.size() == 2);
    const FeedItem& a = p.value.items[0];
    CHECK(a.id == "m1");
    CHECK_FALSE(a.deleted);
    CHECK(a.request_id == "req-42");
    CHECK(a.text == "Aqueducts used gravity.");
    CHECK(a.doc_id == "d9");
    CHECK(a.title == "Rome");
    CHECK(a.created_at == 1700000000123);
    CHECK(p.value.items[1].id == "m0");
    CHECK(p.value.items[1].deleted);
    CHECK(p.value.next_cursor == "7");
    CHECK(srv.log()[0].target == "/v1/memory/changes?since=a%20b%26c&limit=50&wait=2");
    auto q = await<FeedPage>([&](auto cb) { cli.get_changes("7", 50, 0, cb); });
    REQUIRE(!q.ec);
    CHECK(q.value.items.empty());
    CHECK(q.value.next_cursor == "7");  // numeric cursor -> its decimal text
    CHECK(srv.log()[1].target == "/v1/memory/changes?since=7&limit=50");
}

// A hostile or buggy cloud may send numbers that do not fit the fields: a double outside int64
// (whose conversion would be undefined behaviour), an unsigned integer above INT64_MAX. They are
// treated as absent; integer ids and cursors keep their exact decimal text.
TEST_CASE("cloud: numbers that do not fit their fields are treated as absent") {
    FaultServer srv([](const FaultRequest& r) {
        if (r.target.rfind("/v1/memory/changes", 0) == 0)
            return FaultReply{200, "application/json", {},
                              R"({"items":[{"id":18446744073709551615,"text":"a","created_at":1e300},
                                 {"id":"m2","text":"b","created_at":-1e300},
                                 {"id":"m3","text":"c","created_at":1.7e12},
                                 {"id":"m4","text":"d","created_at":18446744073709551615},
                                 {"id":-5,"text":"e","created_at":-9223372036854775808}],
                                 "next_cursor":18446744073709551615})"};
        if (r.target.rfind("/v1/sources/", 0) == 0)
            return FaultReply{200, "application/json", {},
                              R"({"passage":"p","index":1e300,"count":18446744073709551615})"};
        return FaultReply{200, "application/json", {},
                          R"({"choices":[{"message":{"content":"hi"},"finish_reason":"stop"}],
                             "usage":{"prompt_tokens":18446744073709551615,"completion_tokens":3.5e300}})"};
    });
    CloudClient cli(fast_config(srv.url()));
    auto p = await<FeedPage>([&](auto cb) { cli.get_changes("0", 50, 0, cb); });
    REQUIRE_MESSAGE(!p.ec, p.message);
    REQUIRE(p.value.items.size() == 5);
    CHECK(p.value.items[0].id == "18446744073709551615");
    CHECK(p.value.items[0].created_at == 0);
    CHECK(p.value.items[1].created_at == 0);
    CHECK(p.value.items[2].created_at == 1700000000000);
    CHECK(p.value.items[3].created_at == 0);
    CHECK(p.value.items[4].id == "-5");
    CHECK(p.value.items[4].created_at == INT64_MIN);
    CHECK(p.value.next_cursor == "18446744073709551615");
    auto s = await<SourcePassage>([&](auto cb) { cli.get_source("d", "", cb); });
    REQUIRE_MESSAGE(!s.ec, s.message);
    CHECK(s.value.index == 0);
    CHECK(s.value.count == 0);
    auto c = await<ChatResult>([&](auto cb) { cli.chat(hello(), cb); });
    REQUIRE_MESSAGE(!c.ec, c.message);
    CHECK(c.value.text == "hi");
    CHECK(c.value.prompt_tokens == -1);
    CHECK(c.value.completion_tokens == -1);
}

TEST_CASE("cloud: get_source escapes the doc id and the note, parses the passage; 404 is http_error") {
    FaultServer srv([](const FaultRequest& r) {
        if (r.target.rfind("/v1/sources/missing", 0) == 0)
            return FaultReply{404, "application/json", {}, R"({"error":{"message":"no source document","code":404}})"};
        if (r.target.rfind("/v1/sources/bad", 0) == 0) return FaultReply{200, "application/json", {}, R"({"title":"x"})"};
        return FaultReply{200, "application/json", {},
                          R"({"doc_id":"a b/c","title":"Rome","passage":"Aqueducts used gravity.\nThey ran for miles.",
                             "index":2,"count":5})"};
    });
    CloudClient cli(fast_config(srv.url()));
    auto s = await<SourcePassage>([&](auto cb) { cli.get_source("a b/c", "gravity & water", cb); });
    REQUIRE_MESSAGE(!s.ec, s.message);
    CHECK(s.value.doc_id == "a b/c");
    CHECK(s.value.title == "Rome");
    CHECK(s.value.passage == "Aqueducts used gravity.\nThey ran for miles.");
    CHECK(s.value.index == 2);
    CHECK(s.value.count == 5);
    CHECK(srv.log()[0].target == "/v1/sources/a%20b%2Fc?note=gravity%20%26%20water");
    auto m = await<SourcePassage>([&](auto cb) { cli.get_source("missing", "", cb); });
    CHECK(m.ec == cloud_errc::http_error);
    CHECK(m.http_status == 404);
    auto b = await<SourcePassage>([&](auto cb) { cli.get_source("bad", "", cb); });
    CHECK(b.ec == cloud_errc::bad_response);
    auto e = await<SourcePassage>([&](auto cb) { cli.get_source("", "x", cb); });
    CHECK(e.ec == cloud_errc::invalid_argument);
}

TEST_CASE("cloud: a long poll gets wait seconds added to its deadline") {
    FaultServer srv([](const FaultRequest&) {
        FaultReply r{200, "application/json", {}, R"({"items":[],"next_cursor":"0"})"};
        r.delay_ms = 700;  // the server holds the poll open
        return r;
    });
    CloudConfig cfg = fast_config(srv.url());
    cfg.request_timeout = Millis(400);
    CloudClient cli(cfg);
    auto p = await<FeedPage>([&](auto cb) { cli.get_changes("0", 10, 1, cb); });
    CHECK_MESSAGE(!p.ec, p.message);
    CHECK(p.attempts == 1);
}

// ---- online / offline --------------------------------------------------------------------

TEST_CASE("cloud: online/offline follows real outcomes with hysteresis") {
    std::atomic<bool> down{false};
    FaultServer srv([&](const FaultRequest&) {
        FaultReply r{202, "application/json", {}, "{}"};
        if (down) r.fault = Fault::close_at_once;  // nothing comes back: a transport failure
        return r;
    });
    CloudConfig cfg = fast_config(srv.url());
    cfg.retry.max_attempts = 1;
    cfg.offline_after_failures = 3;
    CloudClient cli(cfg);
    std::mutex mu;
    std::vector<ConnectivityEvent> events;
    cli.set_connectivity_callback([&](const ConnectivityEvent& e) {
        std::lock_guard<std::mutex> lk(mu);
        events.push_back(e);
    });
    auto post = [&] { return await<Nothing>([&](auto cb) { cli.post_memory_request({"r", "c", 1, ""}, cb); }); };
    auto n_events = [&] {
        std::lock_guard<std::mutex> lk(mu);
        return events.size();
    };
    CHECK(cli.connectivity() == Connectivity::unknown);
    REQUIRE(!post().ec);
    CHECK(cli.connectivity() == Connectivity::online);
    CHECK(n_events() == 1);

    down = true;
    CHECK(post().ec == cloud_cond::connection);
    CHECK(post().ec == cloud_cond::connection);
    CHECK(cli.connectivity() == Connectivity::online);  // two failures: not yet
    down = false;
    REQUIRE(!post().ec);  // a success in between resets the count: no flapping
    down = true;
    CHECK(post().ec);
    CHECK(post().ec);
    CHECK(cli.connectivity() == Connectivity::online);
    CHECK(post().ec);
    CHECK(cli.connectivity() == Connectivity::offline);
    CHECK(post().ec);  // more failures: no more events
    down = false;
    REQUIRE(!post().ec);
    CHECK(cli.connectivity() == Connectivity::online);
    std::lock_guard<std::mutex> lk(mu);
    REQUIRE(events.size() == 3);
    CHECK(events[0].state == Connectivity::online);
    CHECK(events[1].state == Connectivity::offline);
    CHECK(events[1].previous == Connectivity::online);
    CHECK(events[1].consecutive_failures == 3);
    CHECK(events[2].state == Connectivity::online);
}

TEST_CASE("cloud: HTTP errors count as reachable (the server answered)") {
    FaultServer srv([](const FaultRequest&) { return FaultReply{500, "application/json", {}, "{}"}; });
    CloudConfig cfg = fast_config(srv.url());
    cfg.offline_after_failures = 1;
    CloudClient cli(cfg);
    auto o = await<Nothing>([&](auto cb) { cli.post_memory_request({"r", "c", 1, ""}, cb); });
    CHECK(o.ec == cloud_errc::server_error);
    CHECK(cli.connectivity() == Connectivity::online);
}

// ---- a mix of faults ---------------------------------------------------------------------

TEST_CASE("cloud: under random faults every call ends exactly once and none is lost") {
    std::atomic<unsigned> seed{12345};
    FaultServer srv([&](const FaultRequest& r) {
        unsigned x = seed.fetch_add(2654435761u) * 2246822519u;
        FaultReply rep{202, "application/json", {}, "{\"ok\":true}"};
        switch ((x >> 13) % 6) {
            case 0: rep.status = 500; break;
            case 1: rep.fault = Fault::drop_mid_body; break;
            case 2: rep.status = 429; rep.headers = {{"Retry-After", "0"}}; break;
            case 3: rep.fault = Fault::close_at_once; break;
            case 4: rep.delay_ms = 20; break;
            default: break;
        }
        return rep;
    });
    CloudConfig cfg = fast_config(srv.url());
    cfg.retry.max_attempts = 30;
    CloudClient cli(cfg);
    const int n = 60;
    std::mutex mu;
    std::vector<int> finished(n, 0);
    std::atomic<int> ok{0}, done{0};
    std::promise<void> all;
    for (int i = 0; i < n; ++i)
        cli.post_memory_request({"req-" + std::to_string(i), "ctx", 3, ""}, [&, i](Outcome<Nothing> o) {
            {
                std::lock_guard<std::mutex> lk(mu);
                finished[i]++;
            }
            if (!o.ec) ++ok;
            if (++done == n) all.set_value();
        });
    REQUIRE(all.get_future().wait_for(std::chrono::seconds(20)) == std::future_status::ready);
    CHECK(ok == n);
    for (int i = 0; i < n; ++i) CHECK(finished[i] == 1);
    // Each request id reached the server at least once (none lost).
    std::vector<int> seen(n, 0);
    for (auto& r : srv.log()) {
        auto pos = r.body.find("req-");
        if (pos == std::string::npos) continue;
        seen[std::stoi(r.body.substr(pos + 4))]++;
    }
    for (int i = 0; i < n; ++i) CHECK(seen[i] >= 1);
}

TEST_CASE("cloud: large request bodies are sent whole") {
    FaultServer srv([](const FaultRequest&) { return FaultReply{202, "application/json", {}, "{}"}; });
    CloudClient cli(fast_config(srv.url()));
    std::string ctx(4 << 20, 'c');
    auto t0 = Clock::now();
    auto o = await<Nothing>([&](auto cb) { cli.post_memory_request({"big", ctx, 3, ""}, cb); });
    REQUIRE_MESSAGE(!o.ec, o.message);
    CHECK(ms_since(t0) < 3000);
    REQUIRE(srv.log().size() == 1);
    CHECK(srv.log()[0].body.size() > ctx.size());
}

// ---- TLS ---------------------------------------------------------------------------------

TEST_CASE("cloud: TLS verification is on by default; a trusted CA file or verify_tls=false connects") {
    static const tandem_test::TlsIdentity id = tandem_test::TlsIdentity::self_signed();
    FaultServer srv([](const FaultRequest&) { return FaultReply{200, "application/json", {}, chat_json("secure")}; }, &id);
    REQUIRE(srv.url().rfind("https://", 0) == 0);
    CHECK(CloudConfig{}.verify_tls);
    {
        CloudClient cli(fast_config(srv.url()));  // defaults: verify against the system CAs
        auto o = await<ChatResult>([&](auto cb) { cli.chat(hello(), cb); });
        CHECK_MESSAGE(o.ec == cloud_cond::tls, o.message);
        CHECK(o.attempts == 1);  // a certificate problem is not retried
        CHECK(srv.requests() == 0);  // nothing was sent over the untrusted connection
    }
    {
        tandem_test::TempDir tmp;
        tandem_test::write_file(tmp.file("ca.pem"), id.cert_pem);
        CloudConfig cfg = fast_config(srv.url());
        cfg.ca_file = tmp.file("ca.pem");
        CloudClient cli(cfg);
        for (int i = 0; i < 3; ++i) {
            auto o = await<ChatResult>([&](auto cb) { cli.chat(hello(), cb); });
            REQUIRE_MESSAGE(!o.ec, o.message);
            CHECK(o.value.text == "secure");
        }
        CHECK(cli.stats().connections_opened == 1);  // TLS sessions are kept alive too
    }
    {
        CloudConfig cfg = fast_config(srv.url());
        cfg.verify_tls = false;
        CloudClient cli(cfg);
        CHECK(!await<ChatResult>([&](auto cb) { cli.chat(hello(), cb); }).ec);
    }
}

// ---- one thread --------------------------------------------------------------------------

namespace {
int thread_count() {
    int n = 0;
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("Threads:", 0) == 0) n = std::stoi(line.substr(8));
    return n;
}
}  // namespace

TEST_CASE("cloud: requests in flight add no threads beyond the one loop thread") {
    FaultServer srv([](const FaultRequest&) {
        FaultReply r{200, "application/json", {}, chat_json("x")};
        r.delay_ms = 400;
        return r;
    });
    const int before = thread_count();
    CloudClient cli(fast_config(srv.url()));
    std::atomic<int> done{0};
    for (int i = 0; i < 20; ++i) cli.chat(hello(), [&](Outcome<ChatResult>) { ++done; });
    auto t0 = Clock::now();
    while (srv.requests() < 20 && ms_since(t0) < 5000) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    REQUIRE(srv.requests() == 20);
    // The server runs one thread per connection; the client only its loop thread.
    CHECK(thread_count() - before == 1 + srv.connections());
    while (done < 20 && ms_since(t0) < 5000) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    CHECK(done == 20);
}
