// tandem-cloud with --model: chat completions (plain and SSE) and LLM-written memory notes,
// driven through the real cloud_adapter client against the real server binary.
#include <sys/stat.h>

#include <chrono>
#include <thread>

#include <doctest/doctest.h>

#include "server_process.h"
#include "tandem/cloud_adapter.h"
#include "tandem/engine.h"
#include "test_util.h"

using namespace tandem;
using tandem_test::shared_path;

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
