// tandem::Assistant end to end with real parts: the stories260K model, a SQLite memory store
// in a temp dir, and the real tandem-cloud binary on a loopback port.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <set>
#include <sys/stat.h>
#include <thread>

#include <doctest/doctest.h>

#include "server_process.h"
#include "tandem/assistant.h"
#include "tandem/cloud_adapter.h"
#include "tandem/cpu_matmul.h"
#include "tandem/json_int.h"
#include "tandem/memory_store.h"
#include "tandem/memory_sync.h"
#include "tandem/router.h"
#include "tandem/router_mlp.h"
#include "tandem/router_synth.h"
#include "tandem/router_train.h"
#include "tandem/document_window.h"
#include "tandem/gguf.h"
#include "tandem/suggest_prompt.h"
#include "tandem/tokenizer.h"
#include "test_util.h"

#include "chunk_schedule.h"

using namespace tandem;
using namespace std::chrono_literals;
using tandem_test::shared_path;

// Collects events and lets a test wait for one kind.
struct Events {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<AssistantEvent> seen;
    EventCallback callback() {
        return [this](const AssistantEvent& e) {
            std::lock_guard<std::mutex> lk(mu);
            seen.push_back(e);
            cv.notify_all();
        };
    }
    bool wait_for(EventKind k, std::chrono::milliseconds timeout, size_t from = 0) {
        std::unique_lock<std::mutex> lk(mu);
        return cv.wait_for(lk, timeout, [&] {
            for (size_t i = from; i < seen.size(); i++)
                if (seen[i].kind == k) return true;
            return false;
        });
    }
    bool has(EventKind k) {
        std::lock_guard<std::mutex> lk(mu);
        for (auto& e : seen)
            if (e.kind == k) return true;
        return false;
    }
    std::string message_of(EventKind k) {
        std::lock_guard<std::mutex> lk(mu);
        for (auto& e : seen)
            if (e.kind == k) return e.message;
        return "";
    }
    size_t size() {
        std::lock_guard<std::mutex> lk(mu);
        return seen.size();
    }
};

static AssistantConfig base_config() {
    AssistantConfig c;
    c.model_path = shared_path("models/stories260K.gguf");
    c.n_ctx = 512;
    c.n_threads = 2;
    c.backend = "cpu";
    c.suggestion_tokens = 12;
    return c;
}

static AskOptions ask_tokens(int max_tokens) {
    AskOptions o;
    o.max_tokens = max_tokens;
    return o;
}

static const char* kDoc = "Once upon a time, there was a little girl named Lily. She loved to play outside";

TEST_CASE("json_int_in: a JSON integer within its bounds, nothing else") {
    using nlohmann::json;
    CHECK(tandem::json_int_in(json::parse("5"), 1, 10) == 5);
    CHECK(tandem::json_int_in(json::parse("-5"), -10, 10) == -5);
    CHECK_FALSE(tandem::json_int_in(json::parse("0"), 1, 10));    // below lo (stored unsigned)
    CHECK_FALSE(tandem::json_int_in(json::parse("-11"), -10, 10));
    CHECK_FALSE(tandem::json_int_in(json::parse("11"), 1, 10));
    CHECK_FALSE(tandem::json_int_in(json::parse("3.0"), 1, 10));  // a float, even a whole one
    CHECK_FALSE(tandem::json_int_in(json::parse("1e300"), INT64_MIN, INT64_MAX));
    CHECK_FALSE(tandem::json_int_in(json::parse("\"5\""), 1, 10));
    CHECK_FALSE(tandem::json_int_in(json::parse("18446744073709551615"), INT64_MIN, INT64_MAX));
    CHECK(tandem::json_int_in(json::parse("9223372036854775807"), INT64_MIN, INT64_MAX) == INT64_MAX);
    CHECK(tandem::json_int_in(json::parse("-9223372036854775808"), INT64_MIN, INT64_MAX) == INT64_MIN);
    CHECK_FALSE(tandem::json_int_in(json::parse("1"), -10, -1));  // hi < 0
}

TEST_CASE("suggest streams a continuation and reuses the prompt prefix on the next keystroke") {
    Events ev;
    auto a = Assistant::create(base_config(), ev.callback());
    CHECK(ev.has(EventKind::ModelLoaded));
    // on the CPU it names the matmul kernel path in use, and says when the OS kept the AMX tiles from it
    const std::string loaded = ev.message_of(EventKind::ModelLoaded);
    CHECK(loaded.find(std::string("on the cpu (kernels ") + cpu::kernel_path_name()) != std::string::npos);
    CHECK((loaded.find("did not grant its tile state") != std::string::npos) == cpu::cpu_features().amx_refused);
    std::string streamed;
    const std::string doc = kDoc;
    const SuggestResult r1 = a->suggest(doc, doc.size(), [&](std::string_view p) { streamed += p; return true; });
    CHECK(!r1.text.empty());
    CHECK(streamed == r1.text);
    const std::string doc2 = doc + " in";
    const SuggestResult r2 = a->suggest(doc2, doc2.size());
    CHECK(r2.stats.reused_tokens > 10);  // only the new word is evaluated
    CHECK(r2.stats.prompt_tokens - r2.stats.reused_tokens <= 3);
    CHECK(a->usage().suggestions == 2);
}

TEST_CASE("a suggestion ends with its sentence; the suggestion_* settings; values out of range name the field") {
    const std::string doc = "Once upon a time, there was a little girl";
    auto a = Assistant::create(base_config());
    CHECK(a->suggest(doc, doc.size()).text == " named Lily.");
    // The old rule: a fixed number of tokens, cut only at a blank line.
    auto cfg = base_config();
    cfg.suggestion_end = "paragraph";
    cfg.suggestion_complete_words = false;
    cfg.suggestion_no_repeat_ngram = 0;
    const std::string old = Assistant::create(cfg)->suggest(doc, doc.size()).text;
    CHECK(old.rfind(" named Lily. She", 0) == 0);
    cfg = base_config();
    cfg.suggestion_stop = {" Lily"};
    CHECK(Assistant::create(cfg)->suggest(doc, doc.size()).text == " named");

    for (auto [field, set] : std::vector<std::pair<std::string, std::function<void(AssistantConfig&)>>>{
             {"suggestion_tokens", [](AssistantConfig& c) { c.suggestion_tokens = 0; }},
             {"suggestion_end", [](AssistantConfig& c) { c.suggestion_end = "word"; }},
             {"suggestion_no_repeat_ngram", [](AssistantConfig& c) { c.suggestion_no_repeat_ngram = 1; }},
             {"suggestion_temperature", [](AssistantConfig& c) { c.suggestion_temperature = -0.5; }},
             {"suggestion_top_p", [](AssistantConfig& c) { c.suggestion_top_p = 1.5; }},
             {"suggestion_stop", [](AssistantConfig& c) { c.suggestion_stop = {""}; }},
         }) {
        cfg = base_config();
        set(cfg);
        CHECK_THROWS_WITH_AS(Assistant::create(cfg), doctest::Contains(field.c_str()), std::invalid_argument);
    }
}

TEST_CASE("a newer suggest or cancel() stops the running one") {
    auto cfg = base_config();
    cfg.suggestion_tokens = 400;
    cfg.suggestion_end = "paragraph";  // a long generation to stop
    auto a = Assistant::create(cfg);
    // The second piece waits until cancel() has been called, so that the test does not depend on
    // how many tokens the model makes while this thread is descheduled.
    std::atomic<int> pieces{0};
    std::promise<void> second_piece, cancel_called;
    std::shared_future<void> cancelled = cancel_called.get_future().share();
    SuggestResult first;
    std::thread t([&] {
        first = a->suggest(kDoc, std::string(kDoc).size(), [&](std::string_view) {
            if (++pieces == 2) {
                second_piece.set_value();
                cancelled.wait();
            }
            return true;
        });
    });
    second_piece.get_future().wait();
    a->cancel();
    cancel_called.set_value();
    t.join();
    CHECK(first.cancelled);
    CHECK(first.stats.completion_tokens < 10);
}

TEST_CASE("ask without a cloud answers locally and says why; private queries never leave") {
    auto a = Assistant::create(base_config());
    AskOptions o;
    o.max_tokens = 8;
    const AskResult r = a->ask("Tell me about Lily", "", o);
    CHECK(r.answered_by == "local");
    CHECK(r.reason == "no cloud configured");
    CHECK(r.model == a->usage().model);
    CHECK(!r.model.empty());
    CHECK_FALSE(a->usage().model_is_chat);  // stories260K has no chat template
    CHECK_THROWS_WITH(a->note_source({"m-1", "a note", "doc", "Doc"}), doctest::Contains("no cloud configured"));
    o.private_query = true;
    CHECK(a->ask("secret", "", o).reason.find("private") != std::string::npos);
}

TEST_CASE("a corrupt memory database: an event, and suggestions go on without memory") {
    tandem_test::TempDir dir;
    tandem_test::write_file(dir.file("bad.db"), std::string(8192, 'x'));
    Events ev;
    auto cfg = base_config();
    cfg.memory_db = dir.file("bad.db");
    auto a = Assistant::create(cfg, ev.callback());
    CHECK(ev.has(EventKind::MemoryUnavailable));
    CHECK(!a->suggest(kDoc, std::string(kDoc).size()).text.empty());
}

TEST_CASE("config files: fields, unknown fields and wrong types are errors naming the field") {
    tandem_test::TempDir dir;
    tandem_test::write_file(dir.file("ok.json"), R"({"model_path": "m.gguf", "n_ctx": 1024, "privacy_mode": true})");
    const AssistantConfig c = AssistantConfig::from_json_file(dir.file("ok.json"));
    CHECK(c.n_ctx == 1024);
    CHECK(c.privacy_mode);
    tandem_test::write_file(dir.file("sug.json"), R"({"model_path": "m.gguf", "suggestion_end": "line", "suggestion_stop": ["x", "y"],
        "suggestion_temperature": 0.5, "suggestion_top_k": 5, "suggestion_top_p": 0.9, "suggestion_seed": 9,
        "suggestion_complete_words": false, "suggestion_no_repeat_ngram": 0})");
    const AssistantConfig sc = AssistantConfig::from_json_file(dir.file("sug.json"));
    CHECK(sc.suggestion_end == "line");
    CHECK(sc.suggestion_stop == std::vector<std::string>{"x", "y"});
    CHECK(sc.suggestion_temperature == 0.5);
    CHECK(sc.suggestion_top_k == 5);
    CHECK(sc.suggestion_seed == 9);
    CHECK_FALSE(sc.suggestion_complete_words);
    tandem_test::write_file(dir.file("stop.json"), R"({"model_path": "m.gguf", "suggestion_stop": "x"})");
    CHECK_THROWS_WITH(AssistantConfig::from_json_file(dir.file("stop.json")), doctest::Contains("field 'suggestion_stop' has the wrong type"));
    tandem_test::write_file(dir.file("bad.json"), R"({"model_path": "m.gguf", "nctx": 1})");
    CHECK_THROWS_WITH(AssistantConfig::from_json_file(dir.file("bad.json")), doctest::Contains("unknown field 'nctx'"));
    tandem_test::write_file(dir.file("type.json"), R"({"model_path": "m.gguf", "n_ctx": "big"})");
    CHECK_THROWS_WITH(AssistantConfig::from_json_file(dir.file("type.json")), doctest::Contains("field 'n_ctx' has the wrong type"));
    // numbers are checked before they are converted: no truncation, no out-of-range conversion
    const std::pair<const char*, const char*> bad_numbers[] = {
        {R"("n_threads": 1e30)", "field 'n_threads' must be an integer from -2147483648 to 2147483647 (got 1e+30)"},
        {R"("n_threads": 2.5)", "field 'n_threads' must be an integer from -2147483648 to 2147483647 (got 2.5)"},
        {R"("n_threads": 4294967297)", "field 'n_threads' must be an integer from -2147483648 to 2147483647"},
        {R"("n_ctx": 18446744073709551615)", "field 'n_ctx' must be an integer from -9223372036854775808 to"},
        {R"("suggestion_seed": -1)", "field 'suggestion_seed' must be an integer from 0 to 18446744073709551615"},
        {R"("suggestion_seed": 1.5)", "field 'suggestion_seed' must be an integer from 0"},
        {R"("suggestion_top_p": "high")", "field 'suggestion_top_p' has the wrong type (string): must be a number"},
    };
    for (const auto& [field, message] : bad_numbers) {
        CAPTURE(field);
        tandem_test::write_file(dir.file("num.json"), std::string(R"({"model_path": "m.gguf", )") + field + "}");
        CHECK_THROWS_WITH(AssistantConfig::from_json_file(dir.file("num.json")), doctest::Contains(message));
    }
    tandem_test::write_file(dir.file("seed.json"), R"({"model_path": "m.gguf", "suggestion_seed": 18446744073709551615})");
    CHECK(AssistantConfig::from_json_file(dir.file("seed.json")).suggestion_seed == UINT64_MAX);
    auto cfg = base_config();
    cfg.backend = "tpu";
    CHECK_THROWS_WITH(Assistant::create(cfg), doctest::Contains("backend must be auto, cpu or cuda"));
}

TEST_CASE("memory: typing asks the cloud, notes arrive in SQLite and reach the prompt; offline keeps working") {
    tandem_test::TempDir dir;
    // a small corpus whose sentences the extractive memory service can pick
    REQUIRE(mkdir(dir.file("corpus").c_str(), 0700) == 0);
    tandem_test::write_file(dir.file("corpus/dragons.txt"),
                            "Dragons of the northern hills.\n\nThe red dragon guards the golden castle. "
                            "Dragons breathe fire when the castle is in danger. The castle gate opens at dawn.\n");
    tandem_test::write_file(dir.file("corpus/garden.txt"),
                            "Gardening notes.\n\nTomatoes need sun and water every morning. The garden has a small pond.\n");
    auto cloud = std::make_unique<tandem_test::ServerProcess>(
        TANDEM_CLOUD_BIN, std::vector<std::string>{"--port", "0", "--corpus", dir.file("corpus"), "--db", dir.file("cloud.db")});
    Events ev;
    auto cfg = base_config();
    cfg.memory_db = dir.file("memory.db");
    cfg.cloud_url = cloud->url();
    cfg.memory_edit_threshold = 4;
    auto a = Assistant::create(cfg, ev.callback());
    const std::string doc = "Lily walked to the castle where the red dragon lived. The dragon breathed fire at the castle gate";
    a->suggest(doc, doc.size());
    REQUIRE(ev.wait_for(EventKind::MemoryRequested, 5s));
    REQUIRE(ev.wait_for(EventKind::MemoryUpdated, 20s));
    const auto notes = a->memory_notes();
    REQUIRE(!notes.empty());
    CHECK(notes[0].text.find("ragon") != std::string::npos);
    CHECK(a->usage().memory_notes > 0);
    // the note's source passage, from the cloud's corpus
    const NoteSource src = a->note_source(notes[0]);
    CHECK(src.doc_id == notes[0].doc_id);
    CHECK(src.title == notes[0].title);
    CHECK(src.passage.find(notes[0].text) != std::string::npos);
    // the new notes are evaluated in the background once the writer is idle, then swapped in
    REQUIRE(ev.wait_for(EventKind::MemoryApplied, 20s));
    const std::string doc2 = doc + " and";
    const SuggestResult r = a->suggest(doc2, doc2.size());
    REQUIRE(!r.memory.empty());
    CHECK(r.stats.prompt_tokens - r.stats.reused_tokens <= 3);  // the background did the rest
    CHECK(r.memory[0].doc_id.size() > 0);

    // the cloud goes away: asks still get an answer (local, with the reason), suggestions go on
    cloud->kill(SIGKILL);
    AskOptions o;
    o.max_tokens = 6;
    const AskResult ask = a->ask("What does the dragon guard?", "", o);
    CHECK(ask.answered_by == "local");
    CHECK(ask.reason.find("cloud failed") != std::string::npos);
    CHECK_THROWS_WITH(a->note_source(notes[0]), doctest::Contains("/v1/sources"));
    const std::string doc3 = doc2 + " the";
    CHECK(!a->suggest(doc3, doc3.size()).text.empty());
}

TEST_CASE("ask with a router: the decision, its score and threshold are reported; the knob moves it") {
    tandem_test::TempDir dir;
    auto local = make_router("always-local");
    local->save(dir.file("local.json"));
    auto cfg = base_config();
    cfg.router_path = dir.file("local.json");
    cfg.cloud_url = "http://127.0.0.1:9";  // nothing listens: the router must keep the ask local
    auto a = Assistant::create(cfg);
    AskOptions o;
    o.max_tokens = 4;
    const AskResult r = a->ask("Tell me a story", "", o);
    CHECK(r.answered_by == "local");
    CHECK(r.router_score == 1.0);
    CHECK(r.router_threshold == doctest::Approx(0.5));
    CHECK(r.reason.find("router score") != std::string::npos);
    a->set_router_threshold(0.25);
    CHECK(a->router_threshold() == doctest::Approx(0.25));
    CHECK_THROWS_AS(a->set_router_threshold(1.5), std::invalid_argument);
}

// ask() runs its local work (the router's model signals, the local answer) on the spare
// context, so the keystroke after an ask still reuses the suggestion's cached prefix.
static void check_prefix_survives_ask(const AssistantConfig& cfg) {
    auto a = Assistant::create(cfg);
    const std::string doc = kDoc;
    a->suggest(doc, doc.size());
    AskOptions o;
    o.max_tokens = 6;
    const AskResult ask = a->ask("Who is Lily and where does she play?", "", o);
    CHECK(ask.answered_by == "local");
    const std::string doc2 = doc + " in";
    const SuggestResult r = a->suggest(doc2, doc2.size());
    MESSAGE("suggestion after an ask: " << r.stats.reused_tokens << " of " << r.stats.prompt_tokens << " tokens reused");
    CHECK(r.stats.prompt_tokens > 15);
    CHECK(r.stats.prompt_tokens - r.stats.reused_tokens <= 3);
}

TEST_CASE("ask keeps the suggestion's cached prefix: a local answer") { check_prefix_survives_ask(base_config()); }

// Synthetic routing rows with the gen_entropy and memory_coverage signals, and soft labels.
static Dataset rows_with_signals() {
    SynthOptions so;
    so.n_rows = 300;
    so.with_signals = true;
    return make_synthetic_routing_data(so);
}
static TrainOptions prob_labels(double threshold = 0.5) {
    TrainOptions to;
    to.labels = LabelMode::prob;
    to.threshold = threshold;
    return to;
}

// base_config() with the router file `path` and a cloud where nothing listens: a cloud route
// falls back to the local model.
static AssistantConfig with_router(const std::string& path) {
    auto cfg = base_config();
    cfg.router_path = path;
    cfg.cloud_url = "http://127.0.0.1:9";
    return cfg;
}

TEST_CASE("ask keeps the suggestion's cached prefix: a router that reads the model's signals") {
    tandem_test::TempDir dir;
    // threshold 1: every score is below, so the router says cloud, which fails, and the local model answers
    train_logistic_router(rows_with_signals(), prob_labels(1.0))->save(dir.file("signals.json"));
    check_prefix_survives_ask(with_router(dir.file("signals.json")));
}

// Which signals a router reads is its own virtual (Router::signals): an MLP router trained with
// signals must get them from ask() (a cast to LogisticRouter would give it none, and ask() would
// throw).
TEST_CASE("ask with an MLP router trained with signals: the router gets them") {
    tandem_test::TempDir dir;
    MlpOptions mo;
    mo.steps = 50;
    const auto mlp = train_mlp_router(rows_with_signals(), prob_labels(), mo);
    REQUIRE(mlp->signals() == std::vector<Signal>{Signal::gen_entropy, Signal::memory_coverage});
    mlp->save(dir.file("mlp.json"));
    auto a = Assistant::create(with_router(dir.file("mlp.json")));
    AskOptions o;
    o.max_tokens = 4;
    AskResult r;
    CHECK_NOTHROW(r = a->ask("Tell me about the edge case", "", o));
    CHECK(r.answered_by == "local");
    CHECK(r.router_score >= 0);
    CHECK(r.router_score <= 1);
}


// Background re-evaluation with a real document (~1.3k tokens of WikiText-2) on the demo
// client model: new notes are evaluated while the writer is idle, a keystroke stops that at
// once (and does not wait for it), and the keystroke after the swap reuses the whole prefix.
TEST_CASE("memory: new notes are evaluated in the background, a keystroke cancels that, the next suggest reuses it") {
    tandem_test::TempDir dir;
    const std::string wiki = tandem_test::read_file(shared_path("corpus/wikitext-2-test.raw"));
    std::string doc = wiki.substr(0, 5000);
    doc = doc.substr(0, doc.rfind(' '));
    REQUIRE(mkdir(dir.file("corpus").c_str(), 0700) == 0);
    tandem_test::write_file(dir.file("corpus/wiki.txt"), wiki.substr(0, 60000));  // notes that match the document
    tandem_test::ServerProcess cloud(TANDEM_CLOUD_BIN, {"--port", "0", "--corpus", dir.file("corpus"), "--db", dir.file("cloud.db")});
    Events ev;
    AssistantConfig cfg;
    cfg.model_path = shared_path("models/tandem-demo-client-q8_0.gguf");
    cfg.backend = "cpu";
    cfg.n_ctx = 2048;
    cfg.suggestion_tokens = 2;
    cfg.memory_db = dir.file("memory.db");
    cfg.cloud_url = cloud.url();
    cfg.background_idle_ms = 250;
    auto a = Assistant::create(cfg, ev.callback());
    auto timed = [&](size_t cursor, SuggestResult* out = nullptr) {
        const auto t0 = std::chrono::steady_clock::now();
        SuggestResult r = a->suggest(doc, cursor);
        if (out) *out = r;
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    };
    size_t cursor = 3000;
    const double cold_ms = timed(cursor);  // the whole window: what one re-evaluation costs
    MESSAGE("first suggestion (whole window): " << cold_ms << " ms");
    REQUIRE(ev.wait_for(EventKind::MemoryUpdated, 30s));
    // typing faster than the idle time: the background never gets to run (waiting for the
    // notes above was idle time, so a run may have started then; the first keystroke stopped it)
    timed(++cursor);
    std::this_thread::sleep_for(50ms);
    const int64_t cancels = a->usage().background_cancels, starts = a->usage().background_starts;
    for (int i = 0; i < 5; i++) {
        timed(++cursor);
        std::this_thread::sleep_for(50ms);
    }
    CHECK(a->usage().background_runs == 0);
    CHECK(a->usage().background_starts == starts);
    CHECK(a->usage().background_cancels == cancels);
    // a pause: the background starts after 250 ms; a keystroke as soon as it has started stops
    // it (a whole run takes about cold_ms, so the keystroke must not wait a fixed time: on a
    // fast machine the run would be over)
    for (int i = 0; i < 1000 && a->usage().background_starts == starts; i++) std::this_thread::sleep_for(1ms);
    REQUIRE(a->usage().background_starts == starts + 1);
    SuggestResult r;
    const double cut_ms = timed(++cursor, &r);
    for (int i = 0; i < 200 && a->usage().background_cancels == cancels; i++) std::this_thread::sleep_for(10ms);
    CHECK(a->usage().background_cancels == cancels + 1);
    CHECK(a->usage().background_runs == 0);
    CHECK(r.memory.empty());  // still the old (no) notes: nothing was swapped in half-done
    CHECK(cut_ms < cold_ms / 2);  // it waits for at most one ~15 ms chunk, not the whole run
    // idle: the background resumes and finishes; the next keystroke swaps and reuses it all
    REQUIRE(ev.wait_for(EventKind::MemoryApplied, 60s));
    CHECK(a->usage().background_runs == 1);
    CHECK(a->usage().background_tokens > 100);
    const double swap_ms = timed(++cursor, &r);
    CHECK(!r.memory.empty());
    CHECK(r.stats.prompt_tokens > 800);
    CHECK(r.stats.prompt_tokens - r.stats.reused_tokens <= 4);
    CHECK(swap_ms < cold_ms / 2);
    MESSAGE("keystroke that stopped the background: " << cut_ms << " ms; keystroke with the new notes: " << swap_ms << " ms ("
                                                      << r.stats.reused_tokens << "/" << r.stats.prompt_tokens << " tokens reused)");
}

// The background's chunks on a model of a chunk's cost, fixed + per token (the fixed part: the
// weight reads, about a decode step): they never pass the budget (a keystroke shares the cores
// with at most 120 ms of work, or 4 first chunks' worth where those cost more), and a
// 1,100-token prompt costs little more than one prefill of it in chunks of 256 tokens.
TEST_CASE("memory: the background's chunks grow to a bounded budget and near the bulk prefill's cost") {
    struct Cost {
        double fixed_ms, per_token_ms;
    };
    // a 1B model on two CPU cores (bench-keystroke: about 15 ms a decode step, 1.5 ms a token
    // in bulk), a 100M one, a small model on a GPU, and slow CPUs
    for (const Cost c : {Cost{15, 1.5}, Cost{2.5, 0.4}, Cost{0.3, 0.02}, Cost{40, 4}, Cost{100, 10}}) {
        ChunkSchedule chunks;
        const int64_t n = 1100;
        double total = 0, worst = 0;
        int n_chunks = 0;
        for (int64_t done = 0; done < n; n_chunks++) {
            const int64_t k = std::min(n - done, chunks.next());
            const double ms = c.fixed_ms + c.per_token_ms * (double)k;
            if (n_chunks > 0) worst = std::max(worst, ms);  // the first chunk is 8 tokens whatever they cost
            total += ms;
            chunks.done(k, ms);
            done += k;
        }
        const double bulk = c.fixed_ms * std::ceil(n / 256.0) + c.per_token_ms * (double)n;
        INFO("fixed " << c.fixed_ms << " ms, " << c.per_token_ms << " ms a token: " << n_chunks << " chunks, " << total
                      << " ms against " << bulk << " in bulk, the longest chunk after the first " << worst << " ms");
        const double first = c.fixed_ms + c.per_token_ms * (double)ChunkSchedule::kFirstTokens;
        CHECK(chunks.max_ms() == std::max(ChunkSchedule::kMaxMs, ChunkSchedule::kMaxFirstChunks * first));
        CHECK(worst <= chunks.max_ms());
        CHECK(total <= 1.3 * bulk);
    }
}

TEST_CASE("memory: without background_reeval no shadow context runs (the old sentence-end swap)") {
    tandem_test::TempDir dir;
    auto cfg = base_config();
    cfg.memory_db = dir.file("memory.db");
    cfg.background_reeval = false;
    auto a = Assistant::create(cfg);
    a->suggest(kDoc, std::string(kDoc).size());
    std::this_thread::sleep_for(300ms);
    CHECK(a->usage().background_runs == 0);
    CHECK(a->usage().background_cancels == 0);
}

TEST_CASE("suggest prompt: [BOS] notes, blank line, window; the window moves only when over budget") {
    const Tokenizer tok = Tokenizer::from_gguf(GgufFile::open(tandem_test::shared_path("models/tandem-demo-client-q8_0.gguf")));
    auto enc = [&](const std::string& t) { return tok.encode(t, false); };
    const std::string doc = "The General Assembly meets at a difficult time. We must act together.";
    size_t ws = 0;
    std::vector<int32_t> want = {tok.bos()};
    for (int32_t t : enc("Note one.\nNote two.\n\n")) want.push_back(t);
    for (int32_t t : enc(doc)) want.push_back(t);
    CHECK(build_suggest_prompt(tok, {"Note one.", "Note two."}, doc, 512, 32, &ws) == want);
    CHECK(ws == 0);
    std::vector<int32_t> bare = {tok.bos()};
    for (int32_t t : enc(doc)) bare.push_back(t);
    CHECK(build_suggest_prompt(tok, {}, doc, 512, 32, &ws) == bare);  // no notes: no block

    // 100 tokens of context: budget = 100 - 1 - 32 - 8 = 59 tokens = 177 chars; a longer text
    // moves the window to its last 88 chars (at a word start), and the next keystroke keeps it.
    std::string long_doc;
    while (long_doc.size() < 400) long_doc += "Peace and security for all nations. ";
    const auto p = build_suggest_prompt(tok, {}, long_doc, 100, 32, &ws);
    CHECK(ws > 0);
    CHECK(long_doc.size() - ws <= 88);
    CHECK((ws == 0 || long_doc[ws - 1] == ' '));
    CHECK(p.size() <= 60);
    const size_t kept = ws;
    build_suggest_prompt(tok, {}, long_doc + "W", 100, 32, &ws);
    CHECK(ws == kept);
    CHECK_THROWS_AS(build_suggest_prompt(tok, {}, doc, 40, 32, &ws), std::runtime_error);

    // the notes' retrieval: the last 2000 bytes, and a token cost with the line break
    const std::string big(2500, 'a');
    CHECK(suggest_retrieval_window(big).size() == 2000);
    CHECK(suggest_retrieval_window(doc) == doc);
    const RetrieveParams rp = suggest_retrieve_params(4, 192, tok);
    CHECK(rp.max_items == 4);
    CHECK(rp.budget == 192);
    CHECK(rp.cost("Note one.") == enc("Note one.").size() + 1);
}

TEST_CASE("document window: every cut is a named limit") {
    const DocumentWindowLimits lim;
    CHECK(lim.retrieval_bytes == 2000);
    CHECK(lim.listing_bytes == 4000);
    CHECK(lim.request_words == AssistantConfig{}.memory_window_words);
    std::string doc;
    for (int i = 0; doc.size() < 5000; i++) doc += "word" + std::to_string(i) + (i % 10 == 9 ? "\n" : " ");
    const DocumentWindow w(doc);
    CHECK(w.retrieval_text() == std::string_view(doc).substr(doc.size() - 2000));
    CHECK(w.listing_text() == std::string_view(doc).substr(doc.size() - 4000));
    CHECK(DocumentWindow("short text").retrieval_text() == "short text");

    // the request: the last request_words words, joined by single spaces
    DocumentWindowLimits three;
    three.request_words = 3;
    CHECK(DocumentWindow("one two\nthree  four\tfive ", three).request_context() == "three four five");
    CHECK(DocumentWindow(doc).request_words().size() == 300);
    CHECK(DocumentWindow::tail_words("  a b  ", 5) == std::vector<std::string>{"a", "b"});

    // the prompt text: kept from its start while it fits budget x 3 bytes, else moved to leave
    // half of that, at a word start
    size_t start = 0;
    CHECK(DocumentWindow("a short draft").prompt_text(100, &start) == "a short draft");
    CHECK(start == 0);
    const std::string_view moved = w.prompt_text(100, &start);  // 300 bytes: keep ~150
    CHECK(start > 0);
    CHECK(moved.size() <= 150);
    CHECK((doc[start - 1] == ' ' || doc[start - 1] == '\n'));
    const size_t kept = start;
    CHECK(DocumentWindow(doc + "more").prompt_text(100, &start).size() == doc.size() + 4 - kept);
    CHECK(start == kept);
    CHECK(DocumentWindow("x").prompt_text(100, &start) == "x");  // the text got shorter than the start
    CHECK(start == 0);

    CHECK(estimate_tokens(400) == 100);  // 4 bytes a token where no tokenizer runs
}

// ---- tenants, documents, a cloud that moves, forgetting -------------------------------------

static void write_story_corpus(const tandem_test::TempDir& dir) {
    REQUIRE(mkdir(dir.file("corpus").c_str(), 0700) == 0);
    tandem_test::write_file(dir.file("corpus/dragons.txt"),
                            "Dragons of the northern hills.\n\nThe red dragon guards the golden castle. "
                            "Dragons breathe fire when the castle is in danger. The castle gate opens at dawn.\n");
    tandem_test::write_file(dir.file("corpus/garden.txt"),
                            "Gardening notes.\n\nTomatoes need sun and water every morning. The garden has a small pond. "
                            "Frogs sing in the garden pond at night.\n");
}

// Every item of a memory database (opened beside the Assistant's own connection).
static std::vector<MemoryItem> stored_items(const std::string& path) {
    MemoryStoreParams p;
    p.path = path;
    MemoryStore s(p);
    RetrieveParams rp;
    rp.max_items = 1000;
    rp.budget = 1u << 20;
    return s.retrieve("dragon dragons castle fire gate dawn garden tomatoes sun water pond frogs", rp);
}

static std::unique_ptr<tandem_test::ServerProcess> start_story_cloud(const tandem_test::TempDir& dir, int port = 0,
                                                                     std::vector<std::string> more = {}) {
    std::vector<std::string> args{"--port", std::to_string(port), "--corpus", dir.file("corpus"), "--db", dir.file("cloud.db")};
    args.insert(args.end(), more.begin(), more.end());
    return std::make_unique<tandem_test::ServerProcess>(TANDEM_CLOUD_BIN, args);
}

// An Assistant's config against the story cloud: its memory in `db` (in dir), a memory request
// after 4 edits.
static AssistantConfig story_config(const tandem_test::TempDir& dir, const tandem_test::ServerProcess& cloud,
                                    const std::string& db = "memory.db") {
    auto cfg = base_config();
    cfg.memory_db = dir.file(db);
    cfg.cloud_url = cloud.url();
    cfg.memory_edit_threshold = 4;
    return cfg;
}

// The story cloud, a client for it and a memory store, for the MemorySync tests.
struct StorySyncParts {
    tandem_test::TempDir dir;
    std::unique_ptr<tandem_test::ServerProcess> cloud;
    std::unique_ptr<CloudClient> client;
    std::unique_ptr<MemoryStore> store;
    StorySyncParts() {
        write_story_corpus(dir);
        cloud = start_story_cloud(dir);
        CloudConfig cc;
        cc.base_url = cloud->url();
        client = std::make_unique<CloudClient>(cc);
        MemoryStoreParams sp;
        sp.path = dir.file("memory.db");
        store = std::make_unique<MemoryStore>(sp);
    }
};

// A suggestion that runs longer than the idle time: the background waits for the idle time
// after it ends, not from when it started (it used to start the moment the suggestion ended).
TEST_CASE("memory: the background waits for the idle time after a long suggestion ends") {
    tandem_test::TempDir dir;
    write_story_corpus(dir);
    auto cloud = start_story_cloud(dir);
    Events ev;
    auto cfg = story_config(dir, *cloud);
    cfg.background_idle_ms = 150;
    auto a = Assistant::create(cfg, ev.callback());
    const std::string doc = "Lily walked to the castle where the red dragon lived. The dragon breathed fire at the castle gate";
    a->suggest(doc, doc.size());
    REQUIRE(ev.wait_for(EventKind::MemoryUpdated, 20s));
    // new notes are pending; this suggestion holds the foreground for 400 ms (> 150 ms idle)
    const std::string doc2 = doc + " and";
    a->suggest(doc2, doc2.size(), [](std::string_view) {
        std::this_thread::sleep_for(400ms);
        return false;
    });
    const int64_t starts = a->usage().background_starts;
    std::this_thread::sleep_for(80ms);
    CHECK(a->usage().background_starts == starts);  // not before 150 ms of quiet
    REQUIRE(ev.wait_for(EventKind::MemoryApplied, 20s));  // and then it does run
}


static const std::string kDragonDoc = "Lily walked to the castle where the red dragon lived. The dragon breathed fire at the castle gate";
static const std::string kGardenDoc = "Tom watered the tomatoes in the garden every morning. Frogs sang in the garden pond";

TEST_CASE("tenants: two Assistants with their own tokens sync at the same time and each sees only its own notes") {
    tandem_test::TempDir dir;
    write_story_corpus(dir);
    tandem_test::write_file(dir.file("tokens"), "alice alice-sdk-token-0123456789\nbob bob-sdk-token-0123456789\n");
    REQUIRE(chmod(dir.file("tokens").c_str(), 0600) == 0);
    auto cloud = start_story_cloud(dir, 0, {"--tokens", dir.file("tokens")});
    struct Writer {
        std::string name, doc;
        Events ev;
        std::unique_ptr<Assistant> a;
    };
    Writer w[2] = {{"alice", kDragonDoc, {}, nullptr}, {"bob", kGardenDoc, {}, nullptr}};
    for (Writer& x : w) {
        auto cfg = story_config(dir, *cloud, x.name + ".db");
        cfg.cloud_token = x.name + "-sdk-token-0123456789";
        cfg.background_reeval = false;
        x.a = Assistant::create(cfg, x.ev.callback());
        x.a->set_document(x.name + "-draft");
    }
    std::thread t0([&] { w[0].a->suggest(w[0].doc, w[0].doc.size()); });
    std::thread t1([&] { w[1].a->suggest(w[1].doc, w[1].doc.size()); });
    t0.join();
    t1.join();
    for (Writer& x : w) REQUIRE_MESSAGE(x.ev.wait_for(EventKind::MemoryUpdated, 20s), x.name);
    const auto alice = stored_items(dir.file("alice.db")), bob = stored_items(dir.file("bob.db"));
    REQUIRE(!alice.empty());
    REQUIRE(!bob.empty());
    std::set<std::string> alice_ids;
    for (const auto& it : alice) {
        CHECK(it.doc_id == "dragons.txt");
        CHECK(it.document == "alice-draft");  // the request carried the app's document id
        alice_ids.insert(it.id);
    }
    for (const auto& it : bob) {
        CHECK(it.doc_id == "garden.txt");
        CHECK(it.document == "bob-draft");
        CHECK(alice_ids.count(it.id) == 0);
    }
    CHECK(w[0].a->usage().memory_notes == (int64_t)alice.size());
    CHECK_THROWS_AS(w[0].a->set_document(std::string(257, 'x')), std::invalid_argument);
    CHECK_THROWS_AS(w[0].a->set_document("tab\there"), std::invalid_argument);
}

TEST_CASE("set_document: the notes made for the current document come first") {
    tandem_test::TempDir dir;
    MemoryStoreParams sp;
    sp.path = dir.file("memory.db");
    {
        MemoryStore store(sp);
        std::vector<MemoryChange> page;
        for (int i = 0; i < 6; i++) {
            MemoryChange c;
            c.item.id = "m-" + std::to_string(i);
            c.item.text = "The red dragon guards the castle, note " + std::to_string(i) + ".";
            c.item.doc_id = "dragons.txt";
            c.item.document = i == 0 ? "chapter-2" : "chapter-1";  // ranked last without a preference
            page.push_back(c);
        }
        store.apply_changes(page, "cursor-1", "epoch-1", false);
    }
    auto cfg = base_config();
    cfg.memory_db = sp.path;
    cfg.memory_max_items = 1;
    cfg.background_reeval = false;
    auto a = Assistant::create(cfg);
    const std::string doc = "The dragon and the castle.";
    for (const char* document : {"chapter-2", "chapter-1"}) {
        a->set_document(document);
        const SuggestResult r = a->suggest(doc, doc.size());
        REQUIRE(r.memory.size() == 1);
        CHECK((r.memory[0].id == "m-0") == (std::string(document) == "chapter-2"));
        const auto listed = a->memory_notes(1);
        REQUIRE(listed.size() == 1);
        CHECK(listed[0].id == r.memory[0].id);
    }
}

TEST_CASE("set_cloud: a cloud that moved to another port is followed; a cloud reset under the sync replaces the notes") {
    tandem_test::TempDir dir;
    write_story_corpus(dir);
    auto cloud = start_story_cloud(dir);
    Events ev;
    auto cfg = story_config(dir, *cloud);
    cfg.background_reeval = false;
    auto a = Assistant::create(cfg, ev.callback());
    CHECK(a->cloud_url() == cloud->url());
    a->suggest(kDragonDoc, kDragonDoc.size());
    REQUIRE(ev.wait_for(EventKind::MemoryUpdated, 20s));
    const int64_t first_notes = a->usage().memory_notes;
    REQUIRE(first_notes > 0);

    // The cloud restarts on another port with its database: point the assistant there.
    cloud->kill(SIGTERM);
    cloud = start_story_cloud(dir);
    CHECK_THROWS_AS(a->set_cloud("ftp://nowhere", ""), CloudConfigError);
    CHECK_THROWS_AS(a->set_cloud(cloud->url(), "bad token"), CloudConfigError);
    CHECK(a->cloud_url() == cfg.cloud_url);  // a rejected URL changed nothing
    a->set_cloud(cloud->url(), "");
    CHECK(a->cloud_url() == cloud->url());
    size_t from = ev.size();
    const std::string more = kDragonDoc + ". Then Lily planted tomatoes in the garden and watered them by the pond";
    a->suggest(more, more.size());
    REQUIRE(ev.wait_for(EventKind::MemoryRequested, 5s, from));
    REQUIRE(ev.wait_for(EventKind::MemoryUpdated, 20s, from));
    CHECK(a->usage().memory_notes > first_notes);  // the old notes stay, the new ones joined them
    CHECK(!ev.has(EventKind::MemoryReset));

    // Its database is lost and it comes back on the same port: a new epoch under the running
    // sync. The assistant says so and starts over, without being told anything.
    const int port = cloud->port();
    cloud->kill(SIGTERM);
    for (const char* f : {"cloud.db", "cloud.db-wal", "cloud.db-shm"}) std::remove(dir.file(f).c_str());
    from = ev.size();
    cloud = start_story_cloud(dir, port);
    REQUIRE(ev.wait_for(EventKind::MemoryReset, 40s, from));
    CHECK(a->usage().memory_notes == 0);
    CHECK(stored_items(dir.file("memory.db")).empty());

    // No cloud from now on: asks stay local and say why.
    a->set_cloud("", "");
    CHECK(a->cloud_url().empty());
    CHECK(!a->usage().online);
    CHECK(a->ask("Who guards the castle?", "", ask_tokens(4)).reason == "no cloud configured");
}

// Tight loops on both sides, so that ThreadSanitizer (-DTANDEM_SANITIZE=thread) sees set_cloud's
// writes next to the readers' unlocked moments: without CloudLink's lock in current(), it
// reports a race here (the load test below, with its slow asks, does not).
TEST_CASE("set_cloud against readers on another thread: usage, cloud_url and the privacy switch see one cloud or the other") {
    tandem_test::TempDir dir;
    const std::string urls[2] = {"http://127.0.0.1:9", "http://127.0.0.1:7"};  // nothing listens
    auto cfg = base_config();
    cfg.memory_db = dir.file("memory.db");
    cfg.cloud_url = urls[0];
    auto a = Assistant::create(cfg);
    std::atomic<bool> done{false};
    std::atomic<int> other_urls{0};
    std::thread reader([&] {
        for (int i = 0; !done; i++) {
            const std::string u = a->cloud_url();
            if (u != urls[0] && u != urls[1]) other_urls++;
            (void)a->usage();
            a->set_privacy_mode(i % 2 == 0);
        }
    });
    for (int i = 0; i < 100; i++) a->set_cloud(urls[i % 2], "");
    done = true;
    reader.join();
    CHECK(other_urls == 0);
    CHECK(a->cloud_url() == urls[1]);
}

TEST_CASE("set_cloud while suggestions and asks run: each switch is quick, and the sync follows the last URL") {
    tandem_test::TempDir dir;
    write_story_corpus(dir);
    auto cloud = start_story_cloud(dir);
    Events ev;
    auto cfg = story_config(dir, *cloud);
    auto a = Assistant::create(cfg, ev.callback());  // with the background re-evaluation
    std::atomic<bool> done{false};
    std::thread writer([&] {
        std::string doc = kDragonDoc;
        for (int i = 0; !done; i++) {
            doc += i % 2 ? " and the garden pond" : " near the castle gate";
            a->suggest(doc, doc.size());
        }
    });
    std::thread asker([&] {
        while (!done) a->ask("Who guards the castle?", "", ask_tokens(2));
    });
    auto second = start_story_cloud(dir);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 10; i++) a->set_cloud((i % 2 ? second : cloud)->url(), "");
    const double switch_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    done = true;
    writer.join();
    asker.join();
    CHECK(a->cloud_url() == second->url());
    MESSAGE("10 set_cloud calls under load: " << switch_ms << " ms");
    CHECK(switch_ms < 10000);  // each joins the old sync at once (its long poll is cancelled)
    cloud->kill(SIGTERM);  // only the last URL can bring notes now
    const size_t from = ev.size();
    const std::string fresh = "Frogs sang in the garden pond at night while the tomatoes grew in the sun";
    a->suggest(fresh, fresh.size());
    REQUIRE(ev.wait_for(EventKind::MemoryUpdated, 20s, from));  // the sync runs against the last URL
}

TEST_CASE("MemorySync::Options::start_paused: nothing is sent before set_paused(false)") {
    StorySyncParts parts;
    CloudClient& client = *parts.client;
    MemoryStore& store = *parts.store;
    REQUIRE(store.outbox_enqueue("r-1", "the red dragon guards the castle"));
    MemorySync::Options o;
    o.start_paused = true;
    MemorySync sync(client, store, {}, o);
    std::this_thread::sleep_for(500ms);
    CHECK(client.stats().calls == 0);
    CHECK(store.outbox_due(unix_ms_now()).size() == 1);  // still queued
    sync.set_paused(false);
    for (int i = 0; i < 100 && !store.outbox_due(unix_ms_now()).empty(); i++) std::this_thread::sleep_for(50ms);
    CHECK(store.outbox_due(unix_ms_now()).empty());  // sent once resumed
}

TEST_CASE("forget_memory: a note, a document's notes, then all notes are retracted and leave the synced store") {
    StorySyncParts parts;
    CloudClient& client = *parts.client;
    MemoryStore& store = *parts.store;
    const std::string db = parts.dir.file("memory.db");
    MemorySync::Options o;
    o.background = false;
    MemorySync sync(client, store, {}, o);
    REQUIRE(store.outbox_enqueue("r-dragons", "the red dragon guards the castle and breathes fire", "tale.md"));
    REQUIRE(store.outbox_enqueue("r-garden", "tomatoes need sun and water in the garden", "notes.md"));
    REQUIRE(sync.run_once(5).sent == 2);
    std::vector<MemoryItem> items;
    for (int i = 0; i < 50 && items.empty(); i++) {  // until both requests' notes arrived
        sync.run_once(1);
        items = stored_items(db);
        std::set<std::string> docs;
        for (const auto& it : items) docs.insert(it.document);
        if (docs.size() < 2) items.clear();
    }
    REQUIRE(!items.empty());
    auto forget = [&](ForgetScope scope, const std::string& id) {
        auto f = wait_for<int64_t>([&](auto cb) { return client.forget_memory(scope, id, cb); });
        REQUIRE_MESSAGE(!f.ec, f.message);
        sync.run_once(0);
        return f.value;
    };
    const MemoryItem victim = items[0];
    CHECK(forget(ForgetScope::item, victim.id) == 1);
    CHECK(!store.get(victim.id, nullptr));
    auto again = wait_for<int64_t>([&](auto cb) { return client.forget_memory(ForgetScope::item, victim.id, cb); });
    CHECK(again.http_status == 404);
    size_t in_tale = 0;
    for (const auto& it : stored_items(db)) in_tale += it.document == "tale.md";
    CHECK(forget(ForgetScope::document, "tale.md") == (int64_t)in_tale);
    for (const auto& it : stored_items(db)) CHECK(it.document == "notes.md");
    CHECK(forget(ForgetScope::all, "") > 0);
    CHECK(store.stats().n_items == 0);
}
