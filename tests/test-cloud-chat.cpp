// tandem-cloud with --model: chat completions (plain and SSE) and LLM-written memory notes,
// driven through the real cloud_adapter client against the real server binary; and the
// OpenAI API as clients use it, field by field, over raw HTTP (tests/openai/ runs the
// official `openai` npm client against it too).
#include <sys/stat.h>

#include <chrono>
#include <ctime>
#include <set>
#include <thread>

#include <doctest/doctest.h>

#include "raw_http.h"
#include "server_process.h"
#include "tandem/cloud_adapter.h"
#include "tandem/engine.h"
#include "test_util.h"

using namespace tandem;
using tandem_test::shared_path;
using json = nlohmann::json;

struct CloudWithModel {
    tandem_test::TempDir dir;
    std::unique_ptr<tandem_test::ServerProcess> server;
    CloudWithModel() {
        REQUIRE(mkdir(dir.file("corpus").c_str(), 0700) == 0);
        tandem_test::write_file(dir.file("corpus/lily.txt"),
                                "Lily and the park.\n\nLily loved to play in the park with her dog. One day Lily found a "
                                "big red ball under a tree in the park.\n");
        server = std::make_unique<tandem_test::ServerProcess>(
            TANDEM_CLOUD_BIN, std::vector<std::string>{"--port", "0", "--corpus", dir.file("corpus"), "--db", dir.file("c.db"),
                                                       "--model", shared_path("models/stories260K.gguf")});
    }
};

TEST_CASE("chat completions: plain and streamed answers are the model's greedy text") {
    CloudWithModel cloud;
    CloudConfig cc;
    cc.base_url = cloud.server->url();
    CloudClient client(cc);
    ChatRequest req;
    req.model = "stories";
    req.messages = {{"user", "Once upon a time"}};
    req.max_tokens = 20;
    req.temperature = 0;
    auto plain = wait_for<ChatResult>([&](auto cb) { return client.chat(req, cb); });
    REQUIRE_MESSAGE(!plain.ec, plain.message);
    // the same prompt through the engine directly (raw format: the message text)
    EngineParams ep;
    ep.context.n_ctx = 256;
    auto engine = Engine::load(shared_path("models/stories260K.gguf"), ep);
    GenerateParams gp;
    gp.max_tokens = 20;
    gp.sampling.temperature = 0;
    gp.stop = {"\n\n"};
    CHECK(plain.value.text == engine->generate("Once upon a time", gp).text);
    CHECK(plain.value.text.find("Lily") != std::string::npos);

    std::string deltas;
    auto streamed = wait_for<ChatResult>([&](auto cb) {
        return client.chat_stream(req, [&](std::string_view d) { deltas += d; }, cb);
    });
    REQUIRE_MESSAGE(!streamed.ec, streamed.message);
    CHECK(streamed.value.text == plain.value.text);
    CHECK(deltas == plain.value.text);
    CHECK(!streamed.value.finish_reason.empty());
}

TEST_CASE("chat completions: bad requests get 400 with a reason") {
    CloudWithModel cloud;
    CloudConfig cc;
    cc.base_url = cloud.server->url();
    cc.retry.max_attempts = 1;
    CloudClient client(cc);
    ChatRequest req;
    req.messages = {{"robot", "hi"}};
    auto r = wait_for<ChatResult>([&](auto cb) { return client.chat(req, cb); });
    CHECK(r.http_status == 400);
    CHECK(r.message.find("robot") != std::string::npos);
}

TEST_CASE("memory notes written by the model carry their source") {
    CloudWithModel cloud;
    CloudConfig cc;
    cc.base_url = cloud.server->url();
    CloudClient client(cc);
    MemoryRequestBody body;
    body.request_id = "r1";
    body.context = "Lily played with the red ball in the park";
    auto posted = wait_for<Nothing>([&](auto cb) { return client.post_memory_request(body, cb); });
    REQUIRE_MESSAGE(!posted.ec, posted.message);
    FeedPage page;
    for (int i = 0; i < 20 && page.items.empty(); i++) {
        auto o = wait_for<FeedPage>([&](auto cb) { return client.get_changes("", 10, 2, cb); });
        REQUIRE_MESSAGE(!o.ec, o.message);
        page = o.value;
    }
    REQUIRE(!page.items.empty());
    CHECK(page.items[0].text.rfind("The key point is that", 0) == 0);
    INFO("title: " << page.items[0].title << ", doc: " << page.items[0].doc_id);
    CHECK(!page.items[0].title.empty());
    CHECK(page.items[0].doc_id.find("lily") != std::string::npos);
}

// ---- the OpenAI API, field by field ------------------------------------------------------

static json chat(int port, json body, int want_status = 200) {
    tandem_test::Resp r = tandem_test::http(port, "POST", "/v1/chat/completions", body.dump());
    INFO(body.dump() << " -> " << r.status << " " << r.body);
    REQUIRE(r.status == want_status);
    return r.j();
}

// The data: lines of an SSE answer, parsed ("[DONE]" kept as a string).
static std::vector<json> sse_events(const std::string& raw) {
    std::vector<json> out;
    for (size_t at = raw.find("data: "); at != std::string::npos; at = raw.find("data: ", at + 6)) {
        const std::string data = raw.substr(at + 6, raw.find('\n', at) - at - 6);
        out.push_back(data == "[DONE]" ? json("[DONE]") : json::parse(data));
    }
    return out;
}

// An error is {"error": {"message", "type", "param", "code"}}, with a message for people.
static void check_error_shape(const json& e, const std::string& param) {
    REQUIRE(e.contains("error"));
    const json& x = e["error"];
    CHECK(x.size() == 4);
    CHECK(x["message"].is_string());
    CHECK(x["message"].get<std::string>().find("json.exception") == std::string::npos);
    CHECK(x["type"].is_string());
    CHECK(x.contains("code"));
    if (param.empty()) CHECK(x["param"].is_null());
    else CHECK(x["param"] == param);
}

TEST_CASE("OpenAI API: models, completion fields, token limits, stop, seed, n, content parts, errors") {
    CloudWithModel cloud;
    const int port = cloud.server->port();
    json models = tandem_test::http(port, "GET", "/v1/models").j();
    CHECK(models["object"] == "list");
    REQUIRE(models["data"].size() == 1);
    const json m = models["data"][0];
    CHECK(m["object"] == "model");
    CHECK(m["owned_by"] == "tandem-cloud");
    CHECK(m["created"].is_number_integer());
    const std::string model = m["id"];
    CHECK(tandem_test::http(port, "GET", "/v1/models/" + model).j() == m);
    tandem_test::Resp missing = tandem_test::http(port, "GET", "/v1/models/gpt-nope");
    CHECK(missing.status == 404);
    CHECK(missing.j()["error"]["code"] == "model_not_found");

    const json user = {{{"role", "user"}, {"content", "Once upon a time"}}};
    const json greedy = chat(port, {{"model", "anything"}, {"messages", user}, {"max_tokens", 20}, {"temperature", 0}});
    CHECK(greedy["id"].get<std::string>().rfind("chatcmpl-", 0) == 0);
    CHECK(greedy["object"] == "chat.completion");
    CHECK(greedy["model"] == model);
    const int64_t now = (int64_t)time(nullptr);
    CHECK(greedy["created"].get<int64_t>() >= now - 60);
    CHECK(greedy["created"].get<int64_t>() <= now + 1);
    const std::string text = greedy["choices"][0]["message"]["content"];
    CHECK(greedy["choices"][0]["message"]["role"] == "assistant");
    CHECK(greedy["usage"]["total_tokens"] == greedy["usage"]["prompt_tokens"].get<int>() + greedy["usage"]["completion_tokens"].get<int>());

    // max_completion_tokens (and max_tokens) bound the completion.
    for (const char* key : {"max_completion_tokens", "max_tokens"}) {
        const json c = chat(port, {{"messages", user}, {key, 5}, {"temperature", 0}});
        CHECK(c["usage"]["completion_tokens"] == 5);
        CHECK(c["choices"][0]["finish_reason"] == "length");
    }
    // stop: the text ends before it, without it; as a string or in an array; streamed too.
    const size_t cut = text.find(' ', text.size() / 2);
    REQUIRE(cut != std::string::npos);
    const std::string word = text.substr(cut, text.find(' ', cut + 1) - cut);
    INFO("greedy text: '" << text << "', stop at '" << word << "'");
    for (const json& stop : {json(word), json::array({"\u0001never", word})}) {
        const json c = chat(port, {{"messages", user}, {"max_tokens", 20}, {"temperature", 0}, {"stop", stop}});
        CHECK(c["choices"][0]["message"]["content"] == text.substr(0, text.find(word)));
        CHECK(c["choices"][0]["finish_reason"] == "stop");
    }
    {
        json body = {{"messages", user}, {"max_tokens", 20}, {"temperature", 0}, {"stop", word}, {"stream", true}};
        std::string joined;
        for (const json& e : sse_events(tandem_test::http(port, "POST", "/v1/chat/completions", body.dump()).body))
            if (e.is_object() && !e["choices"].empty()) joined += e["choices"][0]["delta"].value("content", "");
        CHECK(joined == text.substr(0, text.find(word)));
    }
    // seed: the same seed gives the same text; other seeds other texts.
    const json sampled = {{"messages", user}, {"max_tokens", 16}, {"temperature", 1.0}, {"top_p", 0.9}};
    json s1 = sampled, s2 = sampled;
    s1["seed"] = 42;
    s2["seed"] = 42;
    const std::string t42 = chat(port, s1)["choices"][0]["message"]["content"];
    CHECK(chat(port, s2)["choices"][0]["message"]["content"] == t42);
    std::set<std::string> distinct;
    for (int seed = 1; seed <= 6; seed++) {
        json s = sampled;
        s["seed"] = seed;
        distinct.insert(chat(port, s)["choices"][0]["message"]["content"].get<std::string>());
    }
    CHECK(distinct.size() > 1);
    // content as text parts is the same prompt; developer is system.
    const json parts = {{{"role", "user"}, {"content", {{{"type", "text"}, {"text", "Once upon "}}, {{"type", "text"}, {"text", "a time"}}}}}};
    CHECK(chat(port, {{"messages", parts}, {"max_tokens", 20}, {"temperature", 0}})["choices"][0]["message"]["content"] == text);

    // Refusals: 400 naming the param, in OpenAI's shape.
    struct Bad {
        json body;
        std::string param;
    };
    const std::vector<Bad> bad = {
        {{{"messages", user}, {"n", 2}}, "n"},
        {{{"messages", user}, {"max_completion_tokens", 0}}, "max_completion_tokens"},
        {{{"messages", user}, {"temperature", 3}}, "temperature"},
        {{{"messages", user}, {"top_p", 0}}, "top_p"},
        {{{"messages", user}, {"seed", "x"}}, "seed"},
        {{{"messages", user}, {"stop", {"a", "b", "c", "d", "e"}}}, "stop"},
        {{{"messages", user}, {"stream_options", {{"include_usage", true}}}}, "stream_options"},
        {{{"messages", user}, {"tools", json::array()}}, "tools"},
        {{{"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}, {"image_url", {{"url", "x"}}}}}}}}}},
         "messages[0].content[0].type"},
        {{{"messages", {{{"role", "tool"}, {"content", "x"}}}}}, "messages[0].role"},
        {{{"messages", json::array()}}, "messages"},
        {json::object(), "messages"},
    };
    for (const Bad& b : bad) check_error_shape(chat(port, b.body, 400), b.param);
    tandem_test::Resp broken = tandem_test::http(port, "POST", "/v1/chat/completions", "{\"messages\": [");
    CHECK(broken.status == 400);
    check_error_shape(broken.j(), "");
    CHECK(broken.j()["error"]["message"].get<std::string>().find("malformed JSON") != std::string::npos);
    tandem_test::Resp huge = tandem_test::http(port, "POST", "/v1/chat/completions",
                                               R"({"messages": [{"role": "user", "content": "hi"}], "temperature": -1e999})");
    CHECK(huge.status == 400);
    check_error_shape(huge.j(), "");
    check_error_shape(tandem_test::http(port, "GET", "/v1/nope").j(), "");
    check_error_shape(tandem_test::http(port, "PUT", "/v1/chat/completions", "{}").j(), "");
}

TEST_CASE("OpenAI API: a stream starts with the role, ends with the finish reason, then the usage, then [DONE]") {
    CloudWithModel cloud;
    const int port = cloud.server->port();
    const json body = {{"messages", {{{"role", "user"}, {"content", "Once upon a time"}}}},
                       {"max_tokens", 12},
                       {"temperature", 0},
                       {"stream", true},
                       {"stream_options", {{"include_usage", true}}}};
    tandem_test::Resp r = tandem_test::http(port, "POST", "/v1/chat/completions", body.dump());
    REQUIRE(r.status == 200);
    CHECK(r.headers["content-type"] == "text/event-stream");
    const std::vector<json> ev = sse_events(r.body);
    REQUIRE(ev.size() >= 4);
    CHECK(ev.back() == "[DONE]");
    CHECK(ev[0]["choices"][0]["delta"]["role"] == "assistant");
    const json& usage = ev[ev.size() - 2];
    CHECK(usage["choices"].empty());
    CHECK(usage["usage"]["completion_tokens"] == 12);
    const json& last = ev[ev.size() - 3];
    CHECK(last["choices"][0]["finish_reason"] == "length");
    std::string joined;
    for (size_t i = 0; i + 2 < ev.size(); i++) {
        CHECK(ev[i]["object"] == "chat.completion.chunk");
        CHECK(ev[i]["id"] == ev[0]["id"]);
        CHECK(ev[i]["created"] == ev[0]["created"]);
        CHECK(ev[i].contains("usage"));
        CHECK(ev[i]["usage"].is_null());
        joined += ev[i]["choices"][0]["delta"].value("content", "");
    }
    json plain = body;
    plain.erase("stream");
    plain.erase("stream_options");
    CHECK(joined == chat(port, plain)["choices"][0]["message"]["content"]);
}
