// tandem-cloud --llm-url: notes and chat completions produced by an upstream OpenAI-compatible
// server. The upstream is a second tandem-cloud with the built-in model (--model), or, for
// what a real model server cannot be made to do on cue, the test's FaultServer (a hang, the
// request bodies and headers it received).
#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <thread>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "fault_server.h"
#include "http_call.h"
#include "server_process.h"
#include "tandem/cloud_adapter.h"
#include "test_util.h"

using namespace tandem;
using json = nlohmann::json;
using tandem_test::http_call;
using tandem_test::ServerProcess;
using tandem_test::shared_path;

namespace {

struct Corpus {
    tandem_test::TempDir dir;
    Corpus() {
        REQUIRE(mkdir(dir.file("corpus").c_str(), 0700) == 0);
        tandem_test::write_file(dir.file("corpus/lily.txt"),
                                "Lily and the park.\n\nLily loved to play in the park with her dog. One day Lily found a "
                                "big red ball under a tree in the park.\n");
    }
    // tandem-cloud arguments for a server with its own database `db`, plus `extra`.
    std::vector<std::string> args(const std::string& db, std::vector<std::string> extra) const {
        std::vector<std::string> a = {"--port", "0", "--corpus", dir.file("corpus"), "--db", dir.file(db)};
        a.insert(a.end(), extra.begin(), extra.end());
        return a;
    }
};

std::vector<std::string> model_args() { return {"--model", shared_path("models/stories260K.gguf")}; }

Outcome<ChatResult> chat(const std::string& url, const ChatRequest& req, bool stream, std::string* deltas = nullptr,
                         int attempts = 1) {
    CloudConfig cc;
    cc.base_url = url;
    cc.retry.max_attempts = attempts;
    CloudClient client(cc);
    if (!stream) return wait_for<ChatResult>([&](auto cb) { return client.chat(req, cb); });
    return wait_for<ChatResult>([&](auto cb) {
        return client.chat_stream(req, [&](std::string_view d) { if (deltas) *deltas += std::string(d) + "|"; }, cb);
    });
}

ChatRequest story_request() {
    ChatRequest req;
    req.messages = {{"user", "Once upon a time"}};
    req.max_tokens = 24;
    req.temperature = 0;
    return req;
}

// Posts a memory request and waits until it is no longer pending; returns its final state.
json run_memory_request(const std::string& url, const std::string& id, const std::string& context) {
    auto r = http_call("POST", url + "/v1/memory/requests", json{{"request_id", id}, {"context", context}, {"max_items", 2}}.dump());
    REQUIRE(r.status == 202);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
        auto s = http_call("GET", url + "/v1/memory/requests/" + id);
        REQUIRE(s.status == 200);
        json j = json::parse(s.body);
        if (j["state"] != "pending") return j;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL("request " << id << " still pending after 60 s");
    return {};
}

std::vector<std::string> note_texts(const std::string& url) {
    auto r = http_call("GET", url + "/v1/memory/changes?limit=100");
    REQUIRE(r.status == 200);
    const json page = json::parse(r.body);
    std::vector<std::string> out;
    for (const json& e : page["items"]) out.push_back(e.value("text", ""));
    return out;
}

// A valid streamed chat completion answer (what an OpenAI-compatible server sends).
tandem_test::FaultReply sse_answer(const std::vector<std::string>& pieces) {
    tandem_test::FaultReply r(200, "text/event-stream");
    r.fault = tandem_test::Fault::sse;
    for (const std::string& p : pieces)
        r.chunks.push_back("data: " + json{{"choices", {{{"index", 0}, {"delta", {{"content", p}}}}}}}.dump() + "\n\n");
    r.chunks.push_back("data: " + json{{"choices", {{{"index", 0}, {"delta", json::object()}, {"finish_reason", "stop"}}}},
                                       {"usage", {{"prompt_tokens", 7}, {"completion_tokens", 2}}}}.dump() + "\n\n");
    r.chunks.push_back("data: [DONE]\n\n");
    return r;
}

}  // namespace

TEST_CASE("upstream: chat answers, plain and streamed, are the upstream model's text") {
    Corpus c;
    ServerProcess upstream(TANDEM_CLOUD_BIN, c.args("up.db", model_args()));
    ServerProcess front(TANDEM_CLOUD_BIN, c.args("front.db", {"--llm-url", upstream.url() + "/v1"}));

    auto direct = chat(upstream.url(), story_request(), false);
    REQUIRE_MESSAGE(!direct.ec, direct.message);
    REQUIRE(!direct.value.text.empty());
    auto via = chat(front.url(), story_request(), false);
    REQUIRE_MESSAGE(!via.ec, via.message);
    CHECK(via.value.text == direct.value.text);

    std::string deltas;
    auto streamed = chat(front.url(), story_request(), true, &deltas);
    REQUIRE_MESSAGE(!streamed.ec, streamed.message);
    CHECK(streamed.value.text == direct.value.text);
    INFO("deltas: " << deltas);
    CHECK(std::count(deltas.begin(), deltas.end(), '|') > 1);  // passed through piece by piece, not as one block
}

TEST_CASE("upstream: memory notes equal the ones the built-in model writes") {
    Corpus c;
    ServerProcess builtin(TANDEM_CLOUD_BIN, c.args("builtin.db", model_args()));
    ServerProcess upstream(TANDEM_CLOUD_BIN, c.args("up.db", model_args()));
    ServerProcess front(TANDEM_CLOUD_BIN, c.args("front.db", {"--llm-url", upstream.url()}));
    const std::string ctx = "Lily played with the red ball in the park";
    CHECK(run_memory_request(builtin.url(), "r1", ctx)["state"] == "done");
    CHECK(run_memory_request(front.url(), "r1", ctx)["state"] == "done");
    std::vector<std::string> want = note_texts(builtin.url()), got = note_texts(front.url());
    REQUIRE(!want.empty());
    CHECK(want[0].rfind("The key point is that", 0) == 0);
    CHECK(got == want);
    // the front's notes came from the upstream (its chat endpoint served them)
    CHECK(note_texts(upstream.url()).empty());
}

TEST_CASE("upstream: 429 with Retry-After and 503 are retried with backoff, then answered") {
    Corpus c;
    // The upstream's first two chat requests fail (429 asking for 1 s, then 503).
    std::vector<std::string> up_args = model_args();
    up_args.insert(up_args.end(), {"--faults", "/v1/chat/completions=429:1,503"});
    ServerProcess upstream(TANDEM_CLOUD_BIN, c.args("up.db", up_args));
    ServerProcess front(TANDEM_CLOUD_BIN, c.args("front.db", {"--llm-url", upstream.url()}));
    const auto t0 = std::chrono::steady_clock::now();
    auto via = chat(front.url(), story_request(), false);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    REQUIRE_MESSAGE(!via.ec, via.message);
    CHECK(!via.value.text.empty());
    CHECK(s >= 1.0);  // the Retry-After was waited for
    CHECK(s < 15.0);
}

TEST_CASE("upstream: token, model and usage; a client's hang-up leaves no retry behind") {
    Corpus c;
    tandem_test::FaultServer fake([](const tandem_test::FaultRequest&) { return sse_answer({"Hello", " there."}); });
    ServerProcess front(TANDEM_CLOUD_BIN, c.args("front.db", {"--llm-url", fake.url(), "--llm-token", "up-secret",
                                                              "--llm-model", "big-model"}));
    auto via = chat(front.url(), story_request(), false);
    REQUIRE_MESSAGE(!via.ec, via.message);
    CHECK(via.value.text == "Hello there.");
    CHECK(via.value.model == "big-model");
    auto log = fake.log();
    REQUIRE(log.size() == 1);
    CHECK(log[0].target == "/v1/chat/completions");
    CHECK(log[0].authorization == "Bearer up-secret");
    json body = json::parse(log[0].body);
    CHECK(body["model"] == "big-model");
    CHECK(body["stream"] == true);
    CHECK(body["max_tokens"] == 24);
    CHECK(body["messages"][0]["content"] == "Once upon a time");
    // the upstream's token never reaches the client
    auto raw = http_call("POST", front.url() + "/v1/chat/completions",
                         json{{"messages", {{{"role", "user"}, {"content", "hi"}}}}}.dump());
    CHECK(raw.status == 200);
    CHECK(raw.body.find("up-secret") == std::string::npos);
    CHECK(json::parse(raw.body)["usage"]["completion_tokens"] == 2);
    // the client's sampling parameters are passed on
    raw = http_call("POST", front.url() + "/v1/chat/completions",
                    json{{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"seed", 7}, {"top_p", 0.5},
                         {"stop", {"\n\n", "END"}}, {"max_completion_tokens", 9}}.dump());
    CHECK(raw.status == 200);
    log = fake.log();
    REQUIRE(log.size() == 3);
    body = json::parse(log[2].body);
    CHECK(body["seed"] == 7);
    CHECK(body["top_p"] == 0.5);
    CHECK(body["stop"] == json({"\n\n", "END"}));
    CHECK(body["max_tokens"] == 9);
}

TEST_CASE("upstream: a request's passages are sent at once, as many as notes are wanted") {
    Corpus c;
    tandem_test::write_file(c.dir.file("corpus/ball.txt"), "Lily threw the red ball over the tree and her dog ran after it.\n");
    tandem_test::FaultServer slow([](const tandem_test::FaultRequest& r) {
        tandem_test::FaultReply reply(200, "application/json", {},
                                      json{{"choices", {{{"index", 0}, {"message", {{"role", "assistant"}, {"content", " the ball went over tree number " + std::to_string(r.index) + "."}}}, {"finish_reason", "stop"}}}}}.dump());
        reply.delay_ms = 300;
        return reply;
    });
    ServerProcess front(TANDEM_CLOUD_BIN, c.args("front.db", {"--llm-url", slow.url()}));
    CHECK(run_memory_request(front.url(), "r1", "Lily played with the red ball in the park")["state"] == "done");
    auto log = slow.log();
    REQUIRE(log.size() == 2);  // two passages match, two notes wanted: one wave
    CHECK(std::abs(log[1].t_ms - log[0].t_ms) < 250);  // the second did not wait for the first answer
    CHECK(note_texts(front.url()).size() == 2);
}

TEST_CASE("upstream: a hung upstream times out and the error names it") {
    Corpus c;
    tandem_test::FaultServer hung([](const tandem_test::FaultRequest&) {
        tandem_test::FaultReply r = sse_answer({"late"});
        r.delay_ms = 20000;  // far past --llm-timeout
        return r;
    });
    ServerProcess front(TANDEM_CLOUD_BIN, c.args("front.db", {"--llm-url", hung.url(), "--llm-timeout", "0.5"}));
    auto raw = http_call("POST", front.url() + "/v1/chat/completions",
                         json{{"messages", {{{"role", "user"}, {"content", "hi"}}}}}.dump());
    INFO(raw.body);
    CHECK(raw.status == 502);
    CHECK(raw.body.find("the upstream LLM server failed: it did not answer in time (4 attempts)") != std::string::npos);
    CHECK(raw.body.find(hung.url()) == std::string::npos);  // no address of the operator's network
    CHECK(raw.seconds < 12);  // 4 attempts of 0.5 s plus backoff
    CHECK(hung.requests() == 4);
}

TEST_CASE("upstream: when it is down, chat answers 502 and memory requests fail, saying why") {
    Corpus c;
    // A port nobody listens on: bind one, note it, close it.
    int port = 0;
    {
        tandem_test::FaultServer s([](const tandem_test::FaultRequest&) { return tandem_test::FaultReply(); });
        port = s.port();
    }
    const std::string dead = "http://127.0.0.1:" + std::to_string(port);
    ServerProcess front(TANDEM_CLOUD_BIN, c.args("front.db", {"--llm-url", dead, "--llm-timeout", "1"}));
    auto raw = http_call("POST", front.url() + "/v1/chat/completions",
                         json{{"messages", {{{"role", "user"}, {"content", "hi"}}}}}.dump());
    INFO(raw.body);
    CHECK(raw.status == 502);
    const std::string why = "the upstream LLM server failed: tandem-cloud could not connect to it (4 attempts)";
    const json err = json::parse(raw.body)["error"];
    CHECK(err["message"] == why);
    CHECK(err["type"] == "upstream_error");

    std::string deltas;
    auto streamed = chat(front.url(), story_request(), true, &deltas);
    CHECK(streamed.ec);
    CHECK(streamed.message.find(why) != std::string::npos);

    json state = run_memory_request(front.url(), "r1", "Lily played with the red ball in the park");
    CHECK(state["state"] == "failed");
    CHECK(state["error"] == why);
}

TEST_CASE("upstream: bad command lines are refused") {
    Corpus c;
    auto refused = [&](std::vector<std::string> extra) {
        std::vector<std::string> a = c.args("x.db", extra);
        CHECK_THROWS_WITH_AS(ServerProcess(TANDEM_CLOUD_BIN, a, 10000), doctest::Contains("did not start"), std::runtime_error);
    };
    refused({"--llm-url", "ftp://x"});
    refused({"--llm-token", "t"});
    refused({"--llm-url", "http://127.0.0.1:1", "--model", shared_path("models/stories260K.gguf")});
}
