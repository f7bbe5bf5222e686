// The composition assistant's HTTP layer, API handlers and line mode
// (examples/composition_assistant/), driven over real loopback HTTP. The Assistant behind them
// is a small scripted fake defined here: these tests are about the token check, the routes,
// the SSE streams, cancellation by a newer suggestion and shutdown, not about the model
// (tests/e2e/ runs the real binary with the real SDK and models).
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <chrono>
#include <sstream>
#include <thread>

#include "api.h"
#include "doctest/doctest.h"
#include "server.h"
#include "socket_util.h"
#include "tui.h"

using namespace tandem;
using namespace tandem::compose;
namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using json = nlohmann::json;

// ---- a scripted Assistant --------------------------------------------------------------

class ScriptedAssistant : public Assistant {
public:
    std::atomic<bool> slow{false};      // suggest() streams until cancelled (at most 5 s)
    std::atomic<int> cancels{0}, suggests{0};
    std::atomic<bool> cancel_flag{false};
    double threshold = 0.5;
    bool privacy = false;
    std::string last_document, last_instruction, last_selection, last_source_note;
    size_t last_cursor = 0;
    bool last_private = false;

    SuggestResult suggest(std::string_view document, size_t cursor, const TextCallback& on_piece) override {
        suggests++;
        cancel_flag = false;
        last_document = std::string(document);
        last_cursor = cursor;
        SuggestResult r;
        r.memory.push_back({"n1", "The Charter binds members to settle disputes peacefully.", "1970_FRA", "France, 1970"});
        auto emit = [&](const char* p) {
            r.text += p;
            r.stats.completion_tokens++;
            return !on_piece || on_piece(p);
        };
        if (slow) {
            auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
            while (!cancel_flag && std::chrono::steady_clock::now() < until) {
                if (!emit(" more")) break;
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            }
            r.cancelled = true;
            return r;
        }
        if (emit(" of the United") && emit(" Nations")) r.stats.ttft_ms = 3.5;
        r.stats.prompt_tokens = 40;
        r.stats.reused_tokens = 32;
        return r;
    }
    void cancel() override {
        cancels++;
        cancel_flag = true;
    }
    AskResult ask(std::string_view instruction, std::string_view selection, const AskOptions& options,
                  const TextCallback& on_piece) override {
        last_instruction = std::string(instruction);
        last_selection = std::string(selection);
        last_private = options.private_query;
        AskResult r;
        if (options.private_query && options.on_prompt_progress) {  // a local answer's prompt, in two passes
            options.on_prompt_progress(256, 300);
            options.on_prompt_progress(300, 300);
        }
        r.text = "Peace is the first condition.";
        if (on_piece) on_piece(r.text);
        r.answered_by = options.private_query ? "local" : "cloud";
        r.model = options.private_query ? "tandem-demo-client" : "tandem-demo-cloud";
        r.reason = options.private_query ? "private query" : "router score 0.71 >= threshold 0.50";
        r.router_score = 0.71;
        r.router_threshold = threshold;
        return r;
    }
    void set_router_threshold(double t) override { threshold = t; }
    double router_threshold() const override { return threshold; }
    void set_privacy_mode(bool on) override { privacy = on; }
    std::vector<MemoryNote> memory_notes(size_t) override {
        return {{"n1", "The Charter binds members to settle disputes peacefully.", "1970_FRA", "France, 1970"}};
    }
    NoteSource note_source(const MemoryNote& note) override {
        last_source_note = note.text;
        if (note.doc_id != "1970_FRA") throw std::runtime_error("GET /v1/sources: HTTP 404: no source document '" + note.doc_id + "'");
        return {"1970_FRA", "France, 1970", "The Charter binds members to settle disputes peacefully.\nIt was signed in 1945.", 3, 12};
    }
    UsageTotals usage() const override {
        UsageTotals u;
        u.suggestions = suggests;
        u.online = true;
        u.backend = "cpu";
        return u;
    }
    // The real set_cloud's contract: a malformed URL throws CloudConfigError, nothing changes.
    std::string cloud = "http://127.0.0.1:9", cloud_token, document_id;
    void set_cloud(const std::string& url, const std::string& token) override {
        if (!url.empty() && url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)
            throw CloudConfigError("cloud_adapter: base_url must start with http:// or https://, got '" + url + "'");
        cloud = url;
        cloud_token = token;
    }
    std::string cloud_url() const override { return cloud; }
    void set_document(const std::string& id) override {
        if (id.size() > 256) throw std::invalid_argument("document_id must be at most 256 bytes without control characters");
        document_id = id;
    }
};

// ---- a running server ------------------------------------------------------------------

struct Running {
    ScriptedAssistant fake;
    EventHub hub;
    Api api{fake, hub, false, "cloud-token"};
    Server server;
    uint16_t port = 0;
    std::thread thread;
    explicit Running(const std::string& token = "secret-token") : Running(ServerOptions{"127.0.0.1", 0, token}) {}
    explicit Running(ServerOptions opt) : server(std::move(opt), api) {
        port = server.listen();
        thread = std::thread([this] { server.run(); });
    }
    ~Running() {
        server.stop();
        thread.join();
    }
};

struct Answer {
    int status = 0;
    std::string body;
};

static Answer call(uint16_t port, http::verb verb, const std::string& target, const std::string& body = "",
                   const std::string& token_header = "", const std::string& host = "") {
    net::io_context ioc;
    tcp::socket sock(ioc);
    sock.connect({net::ip::make_address("127.0.0.1"), port});
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, host.empty() ? "127.0.0.1:" + std::to_string(port) : host);
    if (!token_header.empty()) req.set("X-Tandem-Token", token_header);
    if (!body.empty()) {
        req.set(http::field::content_type, "application/json");
        req.body() = body;
    }
    req.keep_alive(false);
    req.prepare_payload();
    http::write(sock, req);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    beast::error_code ec;
    http::read(sock, buf, res, ec);
    REQUIRE_MESSAGE(!ec, ec.message());
    return {(int)res.result_int(), res.body()};
}

// Parses "event: NAME\ndata: JSON\n\n" blocks.
static std::vector<std::pair<std::string, json>> sse_events(const std::string& body) {
    std::vector<std::pair<std::string, json>> out;
    size_t pos = 0, end;
    while ((end = body.find("\n\n", pos)) != std::string::npos) {
        std::string block = body.substr(pos, end - pos);
        pos = end + 2;
        std::string name, data;
        std::istringstream in(block);
        for (std::string line; std::getline(in, line);) {
            if (line.rfind("event: ", 0) == 0) name = line.substr(7);
            if (line.rfind("data: ", 0) == 0) data += line.substr(6);
        }
        if (!data.empty()) out.emplace_back(name, json::parse(data));
    }
    return out;
}

static const std::string kToken = "secret-token";

// ---- tests -----------------------------------------------------------------------------

TEST_CASE("compose server: every request needs the token and a local Host") {
    Running r;
    CHECK(call(r.port, http::verb::get, "/").status == 403);
    CHECK(call(r.port, http::verb::get, "/?token=wrong-token-").status == 403);
    CHECK(call(r.port, http::verb::get, "/api/state", "", "secret-tokeN").status == 403);
    CHECK(call(r.port, http::verb::get, "/api/state?token=" + kToken, "", "", "evil.example:80").status == 403);
    Answer a = call(r.port, http::verb::post, "/api/suggest", R"({"document":"x"})");
    CHECK(a.status == 403);
    CHECK(r.fake.suggests == 0);
    CHECK(call(r.port, http::verb::get, "/api/state?token=" + kToken).status == 200);
    CHECK(call(r.port, http::verb::get, "/api/state", "", kToken, "localhost:" + std::to_string(r.port)).status == 200);
}

TEST_CASE("compose server: the page is self-contained") {
    Running r;
    Answer a = call(r.port, http::verb::get, "/?token=" + kToken);
    REQUIRE(a.status == 200);
    CHECK(a.body.find("<textarea id=\"editor\"") != std::string::npos);
    CHECK(a.body.find("<!--SCRIPT-->") == std::string::npos);
    CHECK(a.body.find("<!--STYLE-->") == std::string::npos);
    CHECK(a.body.find("/api/suggest") != std::string::npos);   // app.js inlined
    CHECK(a.body.find(".ghost") != std::string::npos);          // style.css inlined
    CHECK(a.body.find("http://") == std::string::npos);         // nothing from the network
    CHECK(a.body.find("https://") == std::string::npos);
}

TEST_CASE("compose server: unknown paths, wrong methods and bad bodies") {
    Running r;
    CHECK(call(r.port, http::verb::get, "/nope", "", kToken).status == 404);
    CHECK(call(r.port, http::verb::get, "/api/suggest", "", kToken).status == 405);
    CHECK(call(r.port, http::verb::post, "/api/state", "{}", kToken).status == 405);
    Answer a = call(r.port, http::verb::post, "/api/suggest", "{not json", kToken);
    CHECK(a.status == 400);
    CHECK(a.body.find("not valid JSON") != std::string::npos);
    a = call(r.port, http::verb::post, "/api/suggest", R"({"cursor": 1})", kToken);
    CHECK(a.status == 400);
    CHECK(a.body.find("'document'") != std::string::npos);
    a = call(r.port, http::verb::post, "/api/suggest", R"({"document": "abc", "cursor": 4})", kToken);
    CHECK(a.status == 400);
    CHECK(a.body.find("'cursor'") != std::string::npos);
    for (const char* bad : {R"({"document": "abc", "cursor": 18446744073709551615})", R"({"document": "abc", "cursor": 1.5})",
                            R"({"document": "abc", "cursor": -1})", R"({"document": "abc", "cursor": 1e999})"}) {
        CAPTURE(bad);
        a = call(r.port, http::verb::post, "/api/suggest", bad, kToken);
        CHECK(a.status == 400);
    }
    a = call(r.port, http::verb::post, "/api/ask", R"({"instruction": "  "})", kToken);
    CHECK(a.status == 400);
    a = call(r.port, http::verb::post, "/api/ask", R"({"instruction": "q", "private": "yes"})", kToken);
    CHECK(a.status == 400);
    CHECK(a.body.find("'private'") != std::string::npos);
    a = call(r.port, http::verb::post, "/api/knob", R"({"threshold": 1.5})", kToken);
    CHECK(a.status == 400);
    CHECK(r.fake.threshold == 0.5);
    a = call(r.port, http::verb::post, "/api/suggest", "[1,2]", kToken);
    CHECK(a.status == 400);
    std::string big(2 << 20, 'x');
    CHECK(call(r.port, http::verb::post, "/api/suggest", big, kToken).status == 413);
    CHECK(r.fake.suggests == 0);
}

TEST_CASE("compose server: suggest streams pieces, then the notes used and stats") {
    Running r;
    Answer a = call(r.port, http::verb::post, "/api/suggest", R"({"document": "We the peoples", "cursor": 6})", kToken);
    REQUIRE(a.status == 200);
    auto ev = sse_events(a.body);
    REQUIRE(ev.size() == 3);
    CHECK(ev[0].first == "piece");
    CHECK(ev[0].second["text"] == " of the United");
    CHECK(ev[1].second["text"] == " Nations");
    CHECK(ev[2].first == "done");
    CHECK(ev[2].second["text"] == " of the United Nations");
    CHECK(ev[2].second["cancelled"] == false);
    CHECK(ev[2].second["memory"][0]["title"] == "France, 1970");
    CHECK(ev[2].second["stats"]["reused_tokens"] == 32);
    CHECK(r.fake.last_document == "We the peoples");
    CHECK(r.fake.last_cursor == 6);
}

TEST_CASE("compose server: a newer suggestion cancels the running one") {
    Running r;
    r.fake.slow = true;
    // Request A streams until cancelled; read it incrementally.
    net::io_context ioc;
    tcp::socket sock(ioc);
    sock.connect({net::ip::make_address("127.0.0.1"), r.port});
    std::string req_a = "POST /api/suggest HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(r.port) +
                        "\r\nX-Tandem-Token: " + kToken +
                        "\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"document\":\"A\"}";
    net::write(sock, net::buffer(req_a));
    std::string got;
    char buf[4096];
    while (got.find("event: piece") == std::string::npos) got.append(buf, sock.read_some(net::buffer(buf)));

    auto t0 = std::chrono::steady_clock::now();
    r.fake.slow = false;
    Answer b = call(r.port, http::verb::post, "/api/suggest", R"({"document": "B"})", kToken);
    CHECK(b.status == 200);
    CHECK(sse_events(b.body).back().second["cancelled"] == false);
    // A ends, quickly, with done {cancelled: true}.
    beast::error_code ec;
    for (;;) {
        size_t n = sock.read_some(net::buffer(buf), ec);
        if (ec) break;
        got.append(buf, n);
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(s < 2.0);
    CHECK(r.fake.cancels >= 1);
    auto ev = sse_events(got.substr(got.find("\r\n\r\n") + 4));
    REQUIRE(!ev.empty());
    CHECK(ev.back().first == "done");
    CHECK(ev.back().second["cancelled"] == true);
}

TEST_CASE("compose server: ask streams and says who answered and why") {
    Running r;
    Answer a = call(r.port, http::verb::post, "/api/ask",
                    R"({"instruction": "Summarize", "selection": "We the peoples", "private": false})", kToken);
    REQUIRE(a.status == 200);
    auto ev = sse_events(a.body);
    REQUIRE(ev.size() == 2);
    CHECK(ev[0].second["text"] == "Peace is the first condition.");
    CHECK(ev[1].first == "done");
    CHECK(ev[1].second["answered_by"] == "cloud");
    CHECK(ev[1].second["model"] == "tandem-demo-cloud");
    CHECK(ev[1].second["reason"] == "router score 0.71 >= threshold 0.50");
    CHECK(ev[1].second["score"] == doctest::Approx(0.71));
    CHECK(ev[1].second["threshold"] == doctest::Approx(0.5));
    CHECK(r.fake.last_selection == "We the peoples");
    a = call(r.port, http::verb::post, "/api/ask", R"({"instruction": "Summarize", "private": true})", kToken);
    ev = sse_events(a.body);
    REQUIRE(ev.size() == 4);  // the local model's progress through the prompt comes first
    CHECK(ev[0].first == "progress");
    CHECK(ev[0].second["done"] == 256);
    CHECK(ev[0].second["total"] == 300);
    CHECK(ev[1].second["done"] == 300);
    CHECK(ev.back().second["answered_by"] == "local");
    CHECK(r.fake.last_private);
}

TEST_CASE("compose server: a note's source passage") {
    Running r;
    Answer a = call(r.port, http::verb::get, "/api/source?doc_id=1970_FRA&note=The%20Charter%20binds", "", kToken);
    REQUIRE(a.status == 200);
    json s = json::parse(a.body);
    CHECK(s["title"] == "France, 1970");
    CHECK(s["passage"] == "The Charter binds members to settle disputes peacefully.\nIt was signed in 1945.");
    CHECK(s["index"] == 3);
    CHECK(s["count"] == 12);
    CHECK(r.fake.last_source_note == "The Charter binds");
    // The cloud cannot give it: 503 with the reason; no doc_id: 400; POST: 405.
    a = call(r.port, http::verb::get, "/api/source?doc_id=nope", "", kToken);
    CHECK(a.status == 503);
    CHECK(a.body.find("no source document 'nope'") != std::string::npos);
    a = call(r.port, http::verb::get, "/api/source?note=x", "", kToken);
    CHECK(a.status == 400);
    CHECK(a.body.find("'doc_id'") != std::string::npos);
    CHECK(call(r.port, http::verb::post, "/api/source", "{}", kToken).status == 405);
}

TEST_CASE("compose server: state, the knob and the event stream") {
    Running r;
    Answer a = call(r.port, http::verb::post, "/api/knob", R"({"threshold": 0.25, "privacy": true})", kToken);
    REQUIRE(a.status == 200);
    CHECK(r.fake.threshold == doctest::Approx(0.25));
    CHECK(r.fake.privacy);
    r.hub.push({EventKind::Offline, "cloud unreachable"});
    a = call(r.port, http::verb::get, "/api/state", "", kToken);
    REQUIRE(a.status == 200);
    json s = json::parse(a.body);
    CHECK(s["online"] == true);
    CHECK(s["backend"] == "cpu");
    CHECK(s["threshold"] == doctest::Approx(0.25));
    CHECK(s["privacy"] == true);
    CHECK(s["memory"][0]["title"] == "France, 1970");
    CHECK(s["events"][0]["message"] == "cloud unreachable");

    // /api/events replays recent events, then streams new ones as they come.
    net::io_context ioc;
    tcp::socket sock(ioc);
    sock.connect({net::ip::make_address("127.0.0.1"), r.port});
    std::string req = "GET /api/events?token=" + kToken + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(r.port) +
                      "\r\n\r\n";
    net::write(sock, net::buffer(req));
    std::string got;
    char buf[4096];
    while (got.find("cloud unreachable") == std::string::npos) got.append(buf, sock.read_some(net::buffer(buf)));
    r.hub.push({EventKind::MemoryUpdated, "3 new notes"});
    while (got.find("3 new notes") == std::string::npos) got.append(buf, sock.read_some(net::buffer(buf)));
    auto ev = sse_events(got.substr(got.find("\r\n\r\n") + 4));
    REQUIRE(ev.size() == 2);
    CHECK(ev[1].second["kind"] == event_kind_name(EventKind::MemoryUpdated));
    CHECK(ev[1].second["seq"] == 2);
}

TEST_CASE("compose server: the cloud's URL is in the state and the page, and POST /api/cloud moves it") {
    Running r;
    CHECK(json::parse(call(r.port, http::verb::get, "/api/state", "", kToken).body)["cloud_url"] == "http://127.0.0.1:9");
    Answer a = call(r.port, http::verb::post, "/api/cloud", R"({"url": "http://127.0.0.1:4711"})", kToken);
    REQUIRE(a.status == 200);
    CHECK(json::parse(a.body)["cloud_url"] == "http://127.0.0.1:4711");
    CHECK(r.fake.cloud_token == "cloud-token");  // the token the app was started with
    CHECK(json::parse(call(r.port, http::verb::get, "/api/state", "", kToken).body)["cloud_url"] == "http://127.0.0.1:4711");
    // The app's token goes only to the site it was given for (here http://127.0.0.1, any port):
    // another scheme or host, also one hidden behind user info, needs its own token.
    for (const char* elsewhere : {"http://10.0.0.2:8080", "https://127.0.0.1:4711", "http://127.0.0.1:9@10.0.0.5/",
                                  "http://[::1]:9", "HTTP://10.0.0.2"}) {
        a = call(r.port, http::verb::post, "/api/cloud", json{{"url", elsewhere}}.dump(), kToken);
        INFO(elsewhere);
        CHECK(a.status == 400);
        CHECK(a.body.find("sent only to http://127.0.0.1") != std::string::npos);
        CHECK(r.fake.cloud == "http://127.0.0.1:4711");
    }
    a = call(r.port, http::verb::post, "/api/cloud", R"({"url": "http://LOCALHOST.example:1", "token": ""})", kToken);
    REQUIRE(a.status == 200);  // its own (empty) token
    CHECK(r.fake.cloud_token == "");
    a = call(r.port, http::verb::post, "/api/cloud", R"({"url": "http://10.0.0.2:8080", "token": "other"})", kToken);
    REQUIRE(a.status == 200);
    CHECK(r.fake.cloud_token == "other");
    // Bad requests change nothing.
    a = call(r.port, http::verb::post, "/api/cloud", R"({"url": "ftp://x"})", kToken);
    CHECK(a.status == 400);
    CHECK(a.body.find("http:// or https://") != std::string::npos);
    CHECK(call(r.port, http::verb::post, "/api/cloud", "{}", kToken).status == 400);
    CHECK(call(r.port, http::verb::post, "/api/cloud", R"({"url": 5})", kToken).status == 400);
    CHECK(call(r.port, http::verb::get, "/api/cloud", "", kToken).status == 405);
    CHECK(r.fake.cloud == "http://10.0.0.2:8080");
    a = call(r.port, http::verb::post, "/api/cloud", R"({"url": ""})", kToken);  // no cloud
    REQUIRE(a.status == 200);
    CHECK(json::parse(a.body)["cloud_url"] == "");

    // A suggestion names its document; a bad id is a 400 naming the field.
    call(r.port, http::verb::post, "/api/suggest", R"({"document": "Peace", "document_id": "doc-7"})", kToken);
    CHECK(r.fake.document_id == "doc-7");
    a = call(r.port, http::verb::post, "/api/suggest", json{{"document", "Peace"}, {"document_id", std::string(300, 'x')}}.dump(), kToken);
    CHECK(a.status == 400);
    CHECK(a.body.find("document_id") != std::string::npos);
    CHECK(r.fake.document_id == "doc-7");

    // The page shows the URL (a button that re-points it) and sends its document id.
    const std::string page = call(r.port, http::verb::get, "/", "", kToken).body;
    CHECK(page.find("id=\"cloud\"") != std::string::npos);
    CHECK(page.find("/api/cloud") != std::string::npos);
    CHECK(page.find("document_id: DOCUMENT_ID") != std::string::npos);
}

TEST_CASE("compose server: stop() ends streams and run() returns") {
    auto r = std::make_unique<Running>();
    r->fake.slow = true;
    net::io_context ioc;
    tcp::socket ev_sock(ioc), sug_sock(ioc);
    ev_sock.connect({net::ip::make_address("127.0.0.1"), r->port});
    sug_sock.connect({net::ip::make_address("127.0.0.1"), r->port});
    std::string host = "Host: 127.0.0.1:" + std::to_string(r->port) + "\r\n";
    net::write(ev_sock, net::buffer("GET /api/events?token=" + kToken + " HTTP/1.1\r\n" + host + "\r\n"));
    net::write(sug_sock, net::buffer("POST /api/suggest?token=" + kToken + " HTTP/1.1\r\n" + host +
                                     "Content-Length: 16\r\n\r\n{\"document\":\"A\"}"));
    std::string got;
    char buf[4096];
    while (got.find("event: piece") == std::string::npos) got.append(buf, sug_sock.read_some(net::buffer(buf)));
    auto t0 = std::chrono::steady_clock::now();
    r.reset();  // stop() + join run()
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(s < 2.0);
}

// ---- connection limits -----------------------------------------------------------------

static ServerOptions short_timeouts() {
    ServerOptions o{"127.0.0.1", 0, kToken};
    o.idle_timeout_ms = o.header_timeout_ms = o.body_timeout_ms = 300;
    return o;
}

static double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TEST_CASE("compose server: idle, slow-header and stalled-body connections are closed by their timeouts") {
    Running r(short_timeouts());
    const std::string host = "Host: 127.0.0.1:" + std::to_string(r.port) + "\r\n";
    // Silent from the start: the idle timeout.
    int fd = tandem_test::connect_loopback(r.port);
    REQUIRE(fd >= 0);
    auto t0 = std::chrono::steady_clock::now();
    CHECK(tandem_test::wait_closed(fd, 3000));
    CHECK(seconds_since(t0) < 2.0);
    ::close(fd);
    // A head trickled a line every 100 ms, never finished: the header timeout, not the trickle, decides.
    fd = tandem_test::connect_loopback(r.port);
    REQUIRE(tandem_test::send_all(fd, "GET /api/state?token=" + kToken + " HTTP/1.1\r\n"));
    t0 = std::chrono::steady_clock::now();
    bool closed = false;
    for (int i = 0; i < 30 && !closed; i++) {
        tandem_test::send_all(fd, "X-Slow: " + std::to_string(i) + "\r\n");
        closed = tandem_test::wait_closed(fd, 100);
    }
    CHECK(closed);
    CHECK(seconds_since(t0) < 2.0);
    ::close(fd);
    // A body that stops halfway: the body timeout.
    fd = tandem_test::connect_loopback(r.port);
    REQUIRE(tandem_test::send_all(fd, "POST /api/knob?token=" + kToken + " HTTP/1.1\r\n" + host +
                                          "Content-Length: 100\r\n\r\n{\"thres"));
    t0 = std::chrono::steady_clock::now();
    CHECK(tandem_test::wait_closed(fd, 3000));
    CHECK(seconds_since(t0) < 2.0);
    ::close(fd);
    // Kept alive after an answer, then silent: closed after the idle timeout.
    fd = tandem_test::connect_loopback(r.port);
    REQUIRE(tandem_test::send_all(fd, "GET /api/state?token=" + kToken + " HTTP/1.1\r\n" + host + "\r\n"));
    std::string got;
    t0 = std::chrono::steady_clock::now();
    CHECK(tandem_test::wait_closed(fd, 3000, &got));
    CHECK(tandem_test::http_status(got) == 200);
    CHECK(seconds_since(t0) < 2.0);
    ::close(fd);
    CHECK(call(r.port, http::verb::get, "/api/state", "", kToken).status == 200);  // still serving
}

TEST_CASE("compose server: 300 idle connections start no thread; past the cap the idle longest make room") {
    tandem_test::raise_fd_limit();
    ServerOptions o{"127.0.0.1", 0, kToken};
    o.max_connections = 32;
    Running r(o);
    REQUIRE(call(r.port, http::verb::get, "/api/state", "", kToken).status == 200);  // the workers are up
    const int threads_before = tandem_test::thread_count();
    std::vector<int> idle;
    for (int i = 0; i < 300; i++) {
        int fd = tandem_test::connect_loopback(r.port);
        REQUIRE(fd >= 0);
        idle.push_back(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    CHECK(tandem_test::thread_count() <= threads_before);
    // A real request still gets through: idle connections are closed for it.
    auto t0 = std::chrono::steady_clock::now();
    CHECK(call(r.port, http::verb::get, "/api/state", "", kToken).status == 200);
    CHECK(seconds_since(t0) < 5.0);
    int closed = 0;
    for (int fd : idle) closed += tandem_test::is_closed(fd) ? 1 : 0;
    CHECK(closed >= 300 - 32);  // at most the cap stay open, the oldest went first
    CHECK(tandem_test::is_closed(idle.front()));
    for (int fd : idle) ::close(fd);
}

TEST_CASE("compose server: with every worker busy and the queue full, a request gets 503 at once") {
    ServerOptions o{"127.0.0.1", 0, kToken};
    o.workers = 1;
    Running r(o);
    const std::string host = "Host: 127.0.0.1:" + std::to_string(r.port) + "\r\n";
    int stream = tandem_test::connect_loopback(r.port);  // holds the only worker
    REQUIRE(tandem_test::send_all(stream, "GET /api/events?token=" + kToken + " HTTP/1.1\r\n" + host + "\r\n"));
    std::string got;
    REQUIRE(tandem_test::read_until(stream, "200 OK", 10000, &got));
    int queued = tandem_test::connect_loopback(r.port);  // waits for the worker
    REQUIRE(tandem_test::send_all(queued, "GET /api/state?token=" + kToken + " HTTP/1.1\r\n" + host + "\r\n"));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // read and queued by then
    auto t0 = std::chrono::steady_clock::now();
    const std::string third = tandem_test::http_exchange(
        r.port, "GET /api/state?token=" + kToken + " HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n", 5000);
    CHECK(tandem_test::http_status(third) == 503);
    CHECK(third.find("busy") != std::string::npos);
    CHECK(seconds_since(t0) < 2.0);
    ::close(queued);
    ::close(stream);
}

TEST_CASE("compose line mode: text, suggestion, accept, ask, notes, quit") {
    ScriptedAssistant fake;
    std::istringstream in("We the peoples\n/accept\n/ask What is peace?\n/notes\n/bogus\n/quit\nnever read\n");
    std::ostringstream out;
    CHECK(run_tui(fake, in, out, false) == 0);
    std::string o = out.str();
    CHECK(o.find("... of the United Nations") != std::string::npos);
    CHECK(fake.last_document == "We the peoples of the United Nations");  // /accept, then a new suggestion
    CHECK(o.find("answer: Peace is the first condition.") != std::string::npos);
    CHECK(o.find("[answered by cloud, score 0.71 vs threshold 0.50: router score 0.71 >= threshold 0.50]") !=
          std::string::npos);
    CHECK(fake.last_selection == "We the peoples of the United Nations");
    CHECK(o.find("source: France, 1970") != std::string::npos);
    CHECK(o.find("unknown command /bogus") != std::string::npos);
    CHECK(fake.suggests == 2);
}

TEST_CASE("compose line mode: /cloud shows and moves the cloud; the app's token stays on its site") {
    auto run = [](ScriptedAssistant& fake, const std::string& script) {
        std::istringstream in(script);
        std::ostringstream out;
        CHECK(run_tui(fake, in, out, false, "app-token") == 0);
        return out.str();
    };
    ScriptedAssistant same;  // started at http://127.0.0.1:9
    std::string o = run(same, "/cloud\n/cloud http://127.0.0.1:4711\n");
    CHECK(o.find("cloud: http://127.0.0.1:9, ") != std::string::npos);  // shown, with online/offline
    CHECK(o.find("cloud: http://127.0.0.1:4711\n") != std::string::npos);
    CHECK(same.cloud_token == "app-token");  // the same host on another port: the app's token

    ScriptedAssistant other;
    o = run(other, "/cloud http://10.0.0.2:80\n/cloud http://10.0.0.2:80 other\n/cloud ftp://x\n");
    CHECK(o.find("sent only to http://127.0.0.1") != std::string::npos);  // another host, no token: refused
    CHECK(o.find("cloud: http://10.0.0.2:80\n") != std::string::npos);    // then with its own token
    CHECK(o.find("error: ") != std::string::npos);                         // ftp:// refused by set_cloud
    CHECK(other.cloud == "http://10.0.0.2:80");
    CHECK(other.cloud_token == "other");
    CHECK(other.suggests == 0);  // commands are not text

    ScriptedAssistant none;
    o = run(none, "/cloud none\n");
    CHECK(o.find("cloud: (none)") != std::string::npos);
    CHECK(none.cloud.empty());
}
