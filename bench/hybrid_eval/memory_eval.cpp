// bench-hybrid-memory: issue 8's memory experiment (HybridRAG with the demo model pair).
//
// For held-out 2022 drafts (bench/hybrid_eval/drafts.h), the client model (the demo client
// trained on the speeches up to 2005 to read notes, bench/demo_pair) continues the draft under
// each memory condition and is scored on the true next sentence:
//
//   none       no memory
//   notes      notes written by the cloud's LLM (the demo cloud model) from the passages it
//              retrieves for the draft, chosen for the prompt by MemoryStore::retrieve as
//              suggest() does. The cloud's corpus is every speech up to 2022 but the draft's own
//              (leave-one-out); the notes are made by the cloud's own code (ServerDb::search,
//              LlmGenerator) in-process, since a memory request cannot name a speech to leave out
//   raw        the passages the cloud retrieved for that request, within the same token budget
//   unrelated  the notes of another draft (another speech): a control for "any text helps"
//   stale      notes requested for the prefix as it was N sentences earlier (the async path)
//   cloud_rag  the cloud model itself, with the raw passages (cloud-only RAG)
//   cloud_none the cloud model without memory (how much is the bigger model alone)
//   old_none   the old demo client (speeches up to 2020, never shown notes), no memory
//   old_notes  the old demo client with the same notes
//
// The prompt is always the SDK's (tandem/suggest_prompt.h). Scores: the model's NLL per token
// of the truth given the prompt; ROUGE-L and chrF of a greedy continuation (cut at its first
// sentence end). Then time to first token per keystroke: async (the Assistant, notes already
// stored) vs sync (request notes, wait for them, then generate) vs cloud-only RAG (the cloud's
// chat stream), with the cloud answering at once and with 500 ms added to each call.
//
// usage: bench-hybrid-memory [--drafts N] [--quick] [--out DIR] [--cache DIR] [--shared DIR]
//                            [--seed S] [--latency-drafts N] [--threads N]
#include <curl/curl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../../tests/server_process.h"
#include "tandem/cloud/corpus.h"  // examples/cloud_server: split_sentences
#include "drafts.h"
#include "tandem/cloud/llm.h"  // examples/cloud_server: LlmGenerator, the cloud's note writer
#include "memory_report.h"
#include "tandem/cloud/server_db.h"  // examples/cloud_server: the cloud's passage search
#include "tandem/assistant.h"
#include "tandem/cloud_adapter.h"
#include "tandem/document_window.h"
#include "tandem/engine.h"
#include "tandem/memory_store.h"
#include "tandem/memory_sync.h"
#include "tandem/suggest_prompt.h"
#include "text_metrics.h"

using namespace tandem;
using namespace tandem::eval;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

static double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// ---- settings -------------------------------------------------------------------------------

struct Options {
    std::string shared = TANDEM_SHARED_DIR, out = "bench/results/hybrid", cache = "build/hybrid-eval-cache";
    std::string cloud_bin = TANDEM_CLOUD_BIN;
    // The client: the demo client trained on the speeches up to 2005 to read notes
    // (bench/demo_pair); the old client (up to 2020, never shown notes) is a control.
    std::string client = TANDEM_DEMO_CLIENT, old_client;  // old_client "": SHARED/models/tandem-demo-client-q8_0.gguf
    int drafts = 120;  // 2 note requests of ~4-14 s each per draft on 2 shared cores (docs/evaluation.md)
    int latency_drafts = 6;
    int keystrokes = 5;   // async keystrokes timed per latency draft
    uint64_t seed = 2022;
    int threads = 0;
    bool quick = false;
    std::string command;
};

// What the SDK does by default (AssistantConfig) and what the demo models can take.
struct Setup {
    int n_ctx = 512;           // the demo models were trained on 512-token windows
    int reserve = 64;          // tokens kept after the prompt: the truth (<= 280 chars) or 32 generated
    int gen_tokens = 32;
    size_t note_items = (size_t)AssistantConfig{}.memory_max_items;        // 4
    size_t note_budget = (size_t)AssistantConfig{}.memory_budget_tokens;   // 192
    DocumentWindowLimits window;  // request_words: AssistantConfig::memory_window_words (300)
    // Notes per request: 4, the most a suggestion uses (MemorySync asks for 8; each note costs
    // the cloud model ~0.3-1 s of CPU here, and the run must fit ~25 minutes on 2 cores).
    int request_items = 4;
    DraftOptions draft;
    Setup() {
        window.request_words = AssistantConfig{}.memory_window_words;
        draft.min_prefix_sentences = 6;
        draft.truth_sentences = 1;
        draft.max_prefix_chars = 700;  // fits next to a full memory block in 512 tokens (not cut)
        draft.stale_sentences = 4;
        draft.drafts_per_speech = 1;
        draft.min_truth_chars = 30;   // not "Thank you."
    }
};
static constexpr size_t kMaxTruthChars = 280;
static constexpr int kDraftYear = 2022;  // the drafts' year: neither model saw it

// ---- the cloud: tandem-cloud as a child process, plain HTTP for the tool routes ------------------

static size_t curl_sink(char* p, size_t s, size_t n, void* out) {
    static_cast<std::string*>(out)->append(p, s * n);
    return s * n;
}

// One HTTP call (GET/POST/DELETE) for the routes cloud_adapter does not cover (request state,
// /admin/faults). Returns the status; the body in *body. Throws on a transport error.
static long http_call(const std::string& method, const std::string& url, const std::string& json_body, std::string* body) {
    CURL* c = curl_easy_init();
    if (!c) throw std::runtime_error("curl_easy_init failed");
    struct curl_slist* h = curl_slist_append(nullptr, "Content-Type: application/json");
    body->clear();
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
    if (!json_body.empty()) curl_easy_setopt(c, CURLOPT_POSTFIELDS, json_body.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curl_sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    const CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) throw std::runtime_error(method + " " + url + ": " + curl_easy_strerror(rc));
    return status;
}

static std::string request_state(const std::string& url, const std::string& id) {
    std::string body;
    const long st = http_call("GET", url + "/v1/memory/requests/" + id, "", &body);
    if (st != 200) throw std::runtime_error("GET /v1/memory/requests/" + id + ": HTTP " + std::to_string(st) + " " + body);
    return nlohmann::json::parse(body).value("state", "");
}

// Adds `delay_ms` to every call of the memory and chat routes (0: removes all faults).
static void set_cloud_delay(const std::string& url, int delay_ms) {
    std::string body;
    http_call("DELETE", url + "/admin/faults", "", &body);
    if (delay_ms <= 0) return;
    for (const char* path : {"/v1/memory/requests", "/v1/memory/changes", "/v1/chat/completions"}) {
        const nlohmann::json j = {{"path", path}, {"faults", {"delay:" + std::to_string(delay_ms) + "*10000"}}};
        if (http_call("POST", url + "/admin/faults", j.dump(), &body) != 200) throw std::runtime_error("POST /admin/faults: " + body);
    }
}

// Waits until the cloud has no pending memory request (GET /health), so that a timed call does
// not queue behind earlier work.
static void wait_cloud_idle(const std::string& url) {
    const auto deadline = Clock::now() + std::chrono::minutes(5);
    for (std::string body;;) {
        if (http_call("GET", url + "/health", "", &body) == 200 && nlohmann::json::parse(body).value("pending", 1) == 0) return;
        if (Clock::now() > deadline) throw std::runtime_error("tandem-cloud still busy after 5 minutes: " + body);
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
}

// ---- prompts ------------------------------------------------------------------------------

// The notes suggest() would put in the prompt for `before`, given the notes in the store:
// a fresh store holding `items`, MemoryStore::retrieve with the SDK's parameters.
static std::vector<std::string> notes_via_store(const std::vector<FeedItem>& items, const std::string& before,
                                                const Tokenizer& tok, const Setup& su, const std::string& db) {
    for (const char* ext : {"", "-wal", "-shm"}) fs::remove(db + ext);
    std::vector<std::string> out;
    if (items.empty()) return out;
    MemoryStoreParams mp;
    mp.path = db;
    MemoryStore store(mp);
    std::vector<MemoryChange> page;
    for (const auto& it : items) page.push_back(memory_change_from(it));
    store.apply_changes(page, "1");
    for (const auto& m : store.retrieve(suggest_retrieval_window(before), suggest_retrieve_params(su.note_items, su.note_budget, tok)))
        out.push_back(m.text);
    return out;
}

// The passages in rank order, one a line, within budget tokens (the last one cut at a word).
static std::vector<std::string> raw_within_budget(const std::vector<cloud::Passage>& passages, const Tokenizer& tok,
                                                  size_t budget) {
    std::vector<std::string> out;
    size_t used = 0;
    for (const auto& p : passages) {
        std::string t = p.text;
        std::replace(t.begin(), t.end(), '\n', ' ');
        size_t cost = tok.encode(t, false).size() + 1;
        while (used + cost > budget && t.size() > 0) {  // cut words off the end until it fits
            const size_t sp = t.find_last_of(' ', t.size() > 8 ? t.size() - 8 : 0);
            t = sp == std::string::npos || sp == 0 ? "" : t.substr(0, sp);
            cost = t.empty() ? 0 : tok.encode(t, false).size() + 1;
        }
        if (t.empty()) break;
        out.push_back(t);
        used += cost;
    }
    return out;
}

static int memory_tokens(const std::vector<std::string>& notes, const Tokenizer& tok) {
    std::string block;
    for (const auto& n : notes) block += n + "\n";
    return block.empty() ? 0 : (int)tok.encode(block + "\n", false).size();
}

// ---- scoring ------------------------------------------------------------------------------

static std::string first_sentence(const std::string& text) {
    const std::vector<std::string> s = cloud::split_sentences(text);
    return s.empty() ? "" : s[0];
}

// The engine's NLL of the truth after the SDK's prompt, and its greedy continuation's overlap.
static DraftScore score(Engine& e, const std::vector<std::string>& notes, const Draft& d, const Setup& su) {
    const Tokenizer& tok = e.tokenizer();
    DraftScore s;
    size_t window_start = 0;
    const std::vector<int32_t> prompt = build_suggest_prompt(tok, notes, d.prefix, su.n_ctx, su.reserve, &window_start);
    s.memory_tokens = memory_tokens(notes, tok);
    s.prompt_tokens = (int)prompt.size();
    s.window_cut = window_start > 0 || (int)prompt.size() - s.memory_tokens - 1 < (int)tok.encode(d.prefix, false).size();
    std::vector<int32_t> truth = tok.encode(d.gap + d.truth, false);
    if ((int64_t)(prompt.size() + truth.size()) > su.n_ctx) truth.resize((size_t)su.n_ctx - prompt.size());
    const int64_t n_vocab = e.model().config().n_vocab;
    std::vector<int32_t> seq = prompt;
    double nll = 0;
    for (int32_t t : truth) {
        e.prefill(seq);  // one new token each time: the rest is the KV cache
        const float* lg = e.last_logits();
        const float mx = *std::max_element(lg, lg + n_vocab);
        double z = 0;
        for (int64_t v = 0; v < n_vocab; v++) z += std::exp((double)(lg[v] - mx));
        nll += std::log(z) + mx - lg[t];
        seq.push_back(t);
    }
    s.tokens = (int)truth.size();
    s.nll = truth.empty() ? 0 : nll / (double)truth.size();
    GenerateParams gp;
    gp.max_tokens = su.gen_tokens;
    gp.sampling.temperature = 0;  // no stop string: the model often starts with a line break
    s.continuation = first_sentence(e.generate_tokens(prompt, gp).text);
    s.rouge = rouge_l_f1(s.continuation, d.truth);
    s.chrf = chrf(s.continuation, d.truth);
    return s;
}

// ---- phase A: memory notes, the cloud's code on a leave-one-out corpus ------------------------

// The cloud's database holds every speech up to the drafts' year; a draft's notes must not
// come from its own speech (the writer's document is not in the cloud's corpus). The protocol's
// memory request names no document to leave out, so the notes are made here, in-process, by
// the code tandem-cloud's memory worker runs: ServerDb::search (3 passages per wanted note, the
// draft's speech excluded) and LlmGenerator with the demo cloud model.

// The request id is a hash of what is asked (context and note count).
static std::string note_request_id(const std::string& context, int max_items) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (unsigned char c : context) h = (h ^ c) * 0x100000001b3ULL;
    char b[40];
    std::snprintf(b, sizeof b, "n%d-%016llx", max_items, (unsigned long long)mix64(h));
    return b;
}

struct NoteRequest {
    std::string id, context, exclude_doc;  // exclude_doc: the draft's speech
};

// The passages the cloud retrieves for a request (its worker's search, leave-one-out).
static std::vector<cloud::Passage> request_passages(cloud::ServerDb& db, const NoteRequest& r, int max_items) {
    return db.search(r.context, (size_t)max_items * 3, r.exclude_doc);
}

// Notes for every request, as feed items grouped by request id. Notes are made at temperature
// 0, so a cache file (cache/notes-loo.json, keyed by request id and excluded speech) keeps
// them between runs; delete it to make every note afresh. *already_made: requests found there.
static std::map<std::string, std::vector<FeedItem>> make_notes(cloud::ServerDb& db, std::shared_ptr<Engine> cloud_model,
                                                               const std::vector<NoteRequest>& reqs, int max_items,
                                                               const std::string& cache_file, int* already_made) {
    nlohmann::json cache = nlohmann::json::object();
    if (fs::exists(cache_file)) {
        std::ifstream f(cache_file);
        try {
            cache = nlohmann::json::parse(f);
        } catch (const std::exception& e) {
            throw std::runtime_error(cache_file + ": not JSON (" + e.what() + "); delete it to make the notes again");
        }
    }
    cloud::LlmGenerator gen(std::move(cloud_model));
    std::map<std::string, std::vector<FeedItem>> out;
    *already_made = 0;
    const auto t0 = Clock::now();
    for (size_t i = 0; i < reqs.size(); i++) {
        const NoteRequest& r = reqs[i];
        const std::string key = r.id + "|" + r.exclude_doc;
        if (cache.contains(key)) {
            ++*already_made;
        } else {
            nlohmann::json notes = nlohmann::json::array();
            for (const cloud::NewNote& n : gen.generate(r.context, request_passages(db, r, max_items), (size_t)max_items))
                notes.push_back({{"text", n.text}, {"doc_id", n.doc_id}, {"title", n.title}});
            cache[key] = notes;
            std::ofstream(cache_file) << cache.dump(1) << "\n";
        }
        std::vector<FeedItem>& items = out[r.id];
        items.clear();
        for (const auto& n : cache[key]) {
            FeedItem it;
            it.id = r.id + "-" + std::to_string(items.size());
            it.request_id = r.id;
            it.text = n.at("text").get<std::string>();
            it.doc_id = n.at("doc_id").get<std::string>();
            it.title = n.at("title").get<std::string>();
            items.push_back(std::move(it));
        }
        if ((i + 1) % 20 == 0 || i + 1 == reqs.size())
            std::fprintf(stderr, "notes: %zu/%zu requests done (%d from the cache), %.0f s\n", i + 1, reqs.size(),
                         *already_made, ms_since(t0) / 1000);
    }
    return out;
}

// ---- phase D: time to first token ------------------------------------------------------------

// The Assistant's path: notes already in its store, the background sync running against the
// cloud; each keystroke adds one character of the truth and calls suggest().
static LatencySeries async_latency(const std::vector<Draft>& drafts, const std::map<std::string, std::vector<FeedItem>>& notes,
                                   const std::vector<std::string>& ids, const Options& opt, const Setup& su,
                                   const std::string& url, int delay_ms) {
    const std::string db = opt.cache + "/async-" + std::to_string(delay_ms) + ".db";
    for (const char* ext : {"", "-wal", "-shm"}) fs::remove(db + ext);
    {
        MemoryStoreParams mp;
        mp.path = db;
        MemoryStore store(mp);
        std::vector<MemoryChange> page;
        for (const auto& id : ids) {
            auto it = notes.find(id);
            if (it == notes.end()) continue;
            for (const auto& f : it->second) {
                MemoryChange c;
                c.item = {f.id, f.request_id, f.text, f.doc_id, f.title, f.created_at, 0, f.document};
                page.push_back(c);
            }
        }
        store.apply_changes(page, "");
    }
    AssistantConfig c;
    c.model_path = opt.client;
    c.backend = "cpu";
    c.n_threads = opt.threads;
    c.n_ctx = su.n_ctx;
    c.memory_db = db;
    c.cloud_url = url;
    auto a = Assistant::create(c);
    LatencySeries out{"async (Assistant.suggest)", delay_ms, {},
                      "keystroke -> first piece; notes already stored, background sync running"};
    for (const Draft& d : drafts) {
        const std::string text = d.prefix + d.gap + d.truth;
        size_t cursor = d.prefix.size();
        a->suggest(text, cursor);  // a new document: the whole window is evaluated once
        for (int k = 0; k < opt.keystrokes && cursor < text.size(); k++) {
            cursor++;
            const auto t0 = Clock::now();
            double first = -1;
            a->suggest(text, cursor, [&](std::string_view) {
                if (first < 0) first = ms_since(t0);
                return true;
            });
            out.ttft_ms.push_back(first < 0 ? ms_since(t0) : first);
        }
    }
    return out;
}

// Sync: the keystroke sends a memory request and waits for its notes (long poll on the change
// feed), then builds the SDK prompt and generates.
static LatencySeries sync_latency(const std::vector<Draft>& drafts, Engine& client, CloudClient& cloud, const Options& opt,
                                  const Setup& su, const std::string& url, int delay_ms, const std::string& run) {
    LatencySeries out{"sync (wait for notes)", delay_ms, {},
                      "keystroke -> request notes, wait for them, SDK prompt, first token"};
    std::string cursor;  // start from the feed's head: page through once
    for (;;) {
        auto o = wait_for<FeedPage>([&](auto cb) { return cloud.get_changes(cursor, 1000, 0, cb); });
        if (o.ec) throw std::runtime_error("GET /v1/memory/changes: " + o.message);
        if (o.value.items.empty()) break;
        cursor = o.value.next_cursor;
    }
    for (size_t i = 0; i < drafts.size(); i++) {
        const Draft& d = drafts[i];
        const std::string before = d.prefix + d.gap + d.truth.substr(0, 1);
        const std::string id = run + "-sync" + std::to_string(delay_ms) + "-" + std::to_string(i);
        const auto t0 = Clock::now();
        MemoryRequestBody b;
        b.request_id = id;
        b.context = DocumentWindow(before, su.window).request_context();
        b.max_items = su.request_items;
        auto p = wait_for<Nothing>([&](auto cb) { return cloud.post_memory_request(b, cb); });
        if (p.ec) throw std::runtime_error("POST /v1/memory/requests: " + p.message);
        std::vector<FeedItem> mine;
        for (;;) {
            auto o = wait_for<FeedPage>([&](auto cb) { return cloud.get_changes(cursor, 1000, 2, cb); });
            if (o.ec) throw std::runtime_error("GET /v1/memory/changes: " + o.message);
            for (auto& it : o.value.items)
                if (it.request_id == id && !it.deleted) mine.push_back(it);
            cursor = o.value.next_cursor;
            if (!mine.empty()) break;  // a request's notes arrive in one transaction
            if (o.value.items.empty() && request_state(url, id) != "pending") break;  // done without notes
        }
        const std::vector<std::string> notes =
            notes_via_store(mine, before, client.tokenizer(), su, opt.cache + "/sync.db");
        size_t ws = 0;
        const auto prompt = build_suggest_prompt(client.tokenizer(), notes, before, su.n_ctx, su.reserve, &ws);
        GenerateParams gp;
        gp.max_tokens = 1;
        gp.sampling.temperature = 0;
        double first = -1;
        client.generate_tokens(prompt, gp, [&](std::string_view) {
            if (first < 0) first = ms_since(t0);
            return true;
        });
        out.ttft_ms.push_back(first < 0 ? ms_since(t0) : first);
    }
    return out;
}

// Cloud-only RAG: the cloud retrieves passages (the same search, timed here) and its model
// continues the draft; the first streamed piece of POST /v1/chat/completions.
static LatencySeries cloud_latency(const std::vector<Draft>& drafts, CloudClient& cloud, cloud::ServerDb& db,
                                   const Tokenizer& tok, const Setup& su, int delay_ms) {
    LatencySeries out{"cloud-only RAG (chat stream)", delay_ms, {},
                      "keystroke -> passages + draft to the cloud model, first streamed piece"};
    for (const Draft& d : drafts) {
        const std::string before = d.prefix + d.gap + d.truth.substr(0, 1);
        const auto t0 = Clock::now();
        const std::string context = DocumentWindow(before, su.window).request_context();
        const auto passages = db.search(context, (size_t)su.request_items * 3, d.speech_id);
        std::string content;
        for (const auto& r : raw_within_budget(passages, tok, su.note_budget)) content += r + "\n";
        content += "\n" + before;
        ChatRequest req;
        req.model = "tandem-cloud";
        req.messages = {{"user", content}};
        req.max_tokens = su.gen_tokens;
        req.temperature = 0;
        double first = -1;
        auto o = wait_for<ChatResult>([&](auto cb) {
            return cloud.chat_stream(req, [&](std::string_view) { if (first < 0) first = ms_since(t0); }, cb);
        });
        if (o.ec) throw std::runtime_error("POST /v1/chat/completions: " + o.message);
        out.ttft_ms.push_back(first < 0 ? ms_since(t0) : first);
    }
    return out;
}

// ---- main -----------------------------------------------------------------------------------

static const char* kUsage =
    "usage: bench-hybrid-memory [--drafts N] [--quick] [--out DIR] [--cache DIR] [--shared DIR]\n"
    "                           [--seed S] [--latency-drafts N] [--threads N] [--cloud-bin PATH]\n"
    "                           [--client GGUF] [--old-client GGUF]\n"
    "  --drafts N   held-out 2022 drafts scored (default 120); --quick: 4 drafts, 1 for latency\n"
    "  --out DIR    memory.json, memory.md, memory-gain.svg (default bench/results/hybrid)\n"
    "  --cache DIR  the cloud's database (the corpus index is built once, ~minutes), the notes, scratch stores\n"
    "  --client     the client model (default bench/demo_pair/tandem-demo-client-2005-q8_0.gguf)\n"
    "  --old-client the control client (default SHARED/models/tandem-demo-client-q8_0.gguf)\n";

static Options parse_args(int argc, char** argv) {
    Options o;
    for (int i = 0; i < argc; i++) o.command += (i ? " " : "") + std::string(argv[i]);
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
            return argv[++i];
        };
        auto number = [&](long lo, long hi) {
            const std::string v = value();
            char* end = nullptr;
            const long x = std::strtol(v.c_str(), &end, 10);
            if (v.empty() || *end || x < lo || x > hi)
                throw std::invalid_argument(a + " wants an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got '" + v + "'");
            return x;
        };
        if (a == "--drafts") o.drafts = (int)number(2, 100000);
        else if (a == "--latency-drafts") o.latency_drafts = (int)number(0, 1000);
        else if (a == "--seed") o.seed = (uint64_t)number(0, 1L << 62);
        else if (a == "--threads") o.threads = (int)number(0, 256);
        else if (a == "--out") o.out = value();
        else if (a == "--cache") o.cache = value();
        else if (a == "--shared") o.shared = value();
        else if (a == "--cloud-bin") o.cloud_bin = value();
        else if (a == "--client") o.client = value();
        else if (a == "--old-client") o.old_client = value();
        else if (a == "--quick") o.quick = true;
        else if (a == "-h" || a == "--help") { std::fputs(kUsage, stdout); std::exit(0); }
        else throw std::invalid_argument("unknown option '" + a + "'");
    }
    if (o.old_client.empty()) o.old_client = o.shared + "/models/tandem-demo-client-q8_0.gguf";
    if (o.quick) {
        o.drafts = std::min(o.drafts, 4);
        o.latency_drafts = std::min(o.latency_drafts, 1);
        o.keystrokes = 3;
    }
    return o;
}

// The held-out drafts: 2022 speeches, one cut each, truths of 30..280 characters, shuffled
// with the seed, the first n.
static std::vector<Draft> pick_drafts(const Options& o, const Setup& su) {
    const std::vector<Speech> speeches = load_speeches(o.shared + "/corpus/ungd.jsonl.xz", kDraftYear, kDraftYear);
    std::vector<Draft> all;
    for (Draft& d : make_drafts(speeches, su.draft, o.seed))
        if (d.truth.size() <= kMaxTruthChars) all.push_back(std::move(d));
    uint64_t st = mix64(o.seed);
    for (size_t i = all.size(); i > 1; i--) {
        st = mix64(st);
        std::swap(all[i - 1], all[(size_t)(st % i)]);
    }
    std::fprintf(stderr, "%zu speeches of 2022, %zu usable drafts, using %d\n", speeches.size(), all.size(),
                 std::min<int>(o.drafts, (int)all.size()));
    if (all.size() > (size_t)o.drafts) all.resize((size_t)o.drafts);
    if (all.size() < 2) throw std::runtime_error("fewer than 2 drafts: nothing to compare");
    return all;
}

static std::string machine() {
    utsname u{};
    uname(&u);
    std::string cpu;
    std::ifstream f("/proc/cpuinfo");
    for (std::string line; std::getline(f, line);)
        if (line.rfind("model name", 0) == 0) {
            cpu = line.substr(line.find(':') + 2);
            break;
        }
    return cpu + ", " + std::to_string(std::thread::hardware_concurrency()) + " threads, " + u.sysname + " " + u.release;
}

int main(int argc, char** argv) {
    Options opt;
    try {
        opt = parse_args(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench-hybrid-memory: %s\n%s", e.what(), kUsage);
        return 2;
    }
    try {
        const auto t_start = Clock::now();
        curl_global_init(CURL_GLOBAL_DEFAULT);
        const Setup su;
        fs::create_directories(opt.out);
        fs::create_directories(opt.cache);
        MemoryReport rep;
        rep.seed = opt.seed;
        const std::vector<Draft> drafts = pick_drafts(opt, su);
        const size_t n = drafts.size();
        const std::string run = "e" + std::to_string(unix_ms_now());

        // The cloud: tandem-cloud with the demo cloud model and every speech up to the drafts'
        // year (its database is also the corpus of the notes, phase A).
        auto t = Clock::now();
        const std::string cloud_db = opt.cache + "/cloud-ungd-" + std::to_string(kDraftYear) + ".db";
        std::fprintf(stderr, "starting tandem-cloud (the first start indexes the corpus into %s)\n", cloud_db.c_str());
        tandem_test::ServerProcess server(opt.cloud_bin, {"--port", "0", "--corpus", opt.shared + "/corpus/ungd.jsonl.xz",
                                                          "--max-year", std::to_string(kDraftYear), "--db", cloud_db, "--model",
                                                          opt.shared + "/models/tandem-demo-cloud-q8_0.gguf", "--enable-admin"},
                                          30 * 60 * 1000);
        rep.phases["cloud_start"] = ms_since(t) / 1000;
        CloudConfig cc;
        cc.base_url = server.url();
        cc.request_timeout = std::chrono::milliseconds(120000);
        CloudClient cloud(cc);
        set_cloud_delay(server.url(), 0);

        EngineParams ep;
        ep.context.n_ctx = su.n_ctx;
        ep.context.n_threads = opt.threads;
        auto client = Engine::load(opt.client, ep);
        auto old_client = Engine::load(opt.old_client, ep);
        std::shared_ptr<Engine> big = Engine::load(opt.shared + "/models/tandem-demo-cloud-q8_0.gguf", ep);
        const Tokenizer& tok = client->tokenizer();
        const std::unique_ptr<cloud::ServerDb> db = cloud::open_server_db(cloud_db);

        // Phase A: notes for each draft's prefix and for its stale prefix, from every speech up
        // to the drafts' year but the draft's own.
        t = Clock::now();
        std::vector<NoteRequest> reqs;
        for (size_t i = 0; i < n; i++) {
            for (const std::string* text : {&drafts[i].prefix, &drafts[i].stale_prefix}) {
                const std::string ctx = DocumentWindow(*text, su.window).request_context();
                reqs.push_back({note_request_id(ctx, su.request_items), ctx, drafts[i].speech_id});
            }
        }
        int already_made = 0;
        const auto feed = make_notes(*db, big, reqs, su.request_items, opt.cache + "/notes-loo.json", &already_made);
        rep.phases["cloud_notes"] = ms_since(t) / 1000;
        rep.phases["cloud_notes_requests"] = reqs.size();
        rep.phases["cloud_notes_from_cache"] = already_made;  // made by an earlier run (cache/notes-loo.json)
        auto items_of = [&](const std::string& id) {
            auto it = feed.find(id);
            return it == feed.end() ? std::vector<FeedItem>{} : it->second;
        };

        // Phases B and C: every condition for every draft.
        t = Clock::now();
        rep.conditions = {
            {"none", "client", "the draft only", {}},
            {"notes", "client", "cloud LLM notes for the draft (MemoryStore::retrieve, <= 4 notes, <= 192 tokens)", {}},
            {"raw", "client", "the cloud's retrieved passages for the draft, cut to 192 tokens", {}},
            {"unrelated", "client", "notes made for another draft (another speech)", {}},
            {"stale", "client", "notes made for the prefix 4 sentences earlier", {}},
            {"cloud_rag", "cloud", "cloud model with the retrieved passages (cloud-only RAG)", {}},
            {"cloud_none", "cloud", "cloud model, the draft only", {}},
            {"old_none", "old client", "the old demo client (trained to 2020, never shown notes), the draft only", {}},
            {"old_notes", "old client", "the old demo client with the same notes as notes", {}},
        };
        std::map<std::string, double> cond_ms;
        for (size_t i = 0; i < n; i++) {
            const Draft& d = drafts[i];
            const std::string scratch = opt.cache + "/notes.db";
            const auto now_items = items_of(reqs[2 * i].id);
            const std::vector<std::string> notes = notes_via_store(now_items, d.prefix, tok, su, scratch);
            const std::vector<std::string> stale = notes_via_store(items_of(reqs[2 * i + 1].id), d.prefix, tok, su, scratch);
            const std::vector<std::string> other =
                notes_via_store(items_of(reqs[2 * ((i + n / 2) % n)].id), d.prefix, tok, su, scratch);
            const auto passages = request_passages(*db, reqs[2 * i], su.request_items);
            const std::vector<std::string> raw = raw_within_budget(passages, tok, su.note_budget);
            const std::vector<std::pair<Engine*, const std::vector<std::string>*>> runs = {
                {client.get(), nullptr}, {client.get(), &notes}, {client.get(), &raw}, {client.get(), &other},
                {client.get(), &stale}, {big.get(), &raw}, {big.get(), nullptr}, {old_client.get(), nullptr},
                {old_client.get(), &notes}};
            const std::vector<std::string> none;
            for (size_t c = 0; c < runs.size(); c++) {
                const auto tc = Clock::now();
                rep.conditions[c].scores.push_back(score(*runs[c].first, runs[c].second ? *runs[c].second : none, d, su));
                cond_ms[rep.conditions[c].name] += ms_since(tc);
            }
            std::vector<std::string> now_texts;
            for (const auto& f : now_items) now_texts.push_back(f.text);
            rep.drafts.push_back({{"speech_id", d.speech_id}, {"country", d.country}, {"cut_sentence", d.cut_sentence},
                                  {"prefix", d.prefix}, {"truth", d.truth}, {"stale_prefix_chars", d.stale_prefix.size()},
                                  {"notes_received", now_texts}, {"notes_in_prompt", notes}, {"stale_notes_in_prompt", stale},
                                  {"unrelated_from", drafts[(i + n / 2) % n].speech_id}, {"passages", passages.size()},
                                  {"passage_sources", [&] {
                                       std::vector<std::string> v;
                                       for (const auto& p : passages) v.push_back(p.title);
                                       return v;
                                   }()},
                                  {"raw_in_prompt", raw.size()}});
            if ((i + 1) % 10 == 0 || i + 1 == n)
                std::fprintf(stderr, "scored %zu/%zu drafts, %.0f s\n", i + 1, n, ms_since(t) / 1000);
        }
        rep.phases["score_conditions"] = ms_since(t) / 1000;
        for (const auto& [k, v] : cond_ms) rep.phases["score_" + k] = v / 1000;

        // Phase D: time to first token per keystroke.
        t = Clock::now();
        const size_t nl = std::min((size_t)opt.latency_drafts, n);
        const std::vector<Draft> ld(drafts.begin(), drafts.begin() + (long)nl);
        std::vector<std::string> ld_ids;
        for (size_t i = 0; i < nl; i++) ld_ids.push_back(reqs[2 * i].id);
        if (nl > 0) {
            for (int delay : {0, 500}) {
                set_cloud_delay(server.url(), delay);
                rep.latency.push_back(async_latency(ld, feed, ld_ids, opt, su, server.url(), delay));
                wait_cloud_idle(server.url());  // the Assistant's own background requests
                rep.latency.push_back(sync_latency(ld, *client, cloud, opt, su, server.url(), delay, run));
                rep.latency.push_back(cloud_latency(ld, cloud, *db, tok, su, delay));
                std::fprintf(stderr, "latency with +%d ms done, %.0f s\n", delay, ms_since(t) / 1000);
            }
            set_cloud_delay(server.url(), 0);
        }
        rep.phases["latency"] = ms_since(t) / 1000;
        rep.phases["total"] = ms_since(t_start) / 1000;

        char date[32];
        const std::time_t now = std::time(nullptr);
        std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
        rep.settings = {{"command", opt.command}, {"machine", machine()}, {"date", date}, {"drafts", n}, {"seed", opt.seed},
                        {"n_ctx", su.n_ctx}, {"reserve_tokens", su.reserve}, {"generated_tokens", su.gen_tokens},
                        {"note_items", su.note_items}, {"note_budget_tokens", su.note_budget},
                        {"request_max_items", su.request_items}, {"window_words", su.window.request_words},
                        {"max_prefix_chars", su.draft.max_prefix_chars}, {"stale_sentences", su.draft.stale_sentences},
                        {"min_prefix_sentences", su.draft.min_prefix_sentences}, {"truth_chars", {su.draft.min_truth_chars, kMaxTruthChars}},
                        {"latency_drafts", nl}, {"keystrokes_per_draft", opt.keystrokes}, {"threads", opt.threads},
                        {"cloud_run_id", run}, {"client", opt.client}, {"old_client", opt.old_client},
                        {"cloud_corpus", "every speech up to " + std::to_string(kDraftYear) + " but the draft's own (leave-one-out)"}};
        write_memory_report(rep, opt.out);
        std::fputs(memory_markdown(rep).c_str(), stdout);
        std::printf("\n%zu drafts in %.0f s; wrote %s/memory.{json,md} and memory-gain.svg\n", n, ms_since(t_start) / 1000,
                    opt.out.c_str());
        curl_global_cleanup();
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench-hybrid-memory: error: %s\n", e.what());
        return 1;
    }
}
