// Keystroke -> first suggestion token, through tandem::Assistant with prefix reuse and memory
// sync running against the real tandem-cloud: with the cloud answering at once, with 500 ms
// added to every memory call (suggestion latency must not depend on the cloud's), and with
// background re-evaluation off (new notes then cost a full re-evaluation inside suggest()).
// With --ask-every K, every K-th keystroke is followed by an ask() answered by the local model
// (a private query, 8 tokens), and the keystroke after each ask is reported on its own: the
// ask must not cost the suggestion its cached prefix.
//
// usage: bench-keystroke [--model GGUF | --synthetic 100m|llama-1b [--weights q8_0|q4_0]
//                        [--tokenizer GGUF]] [--keys N] [--interval-ms T] [--pause-ms P]
//                        [--doc-chars C] [--backend auto|cpu|cuda] [--shared DIR]
//                        [--cloud-bin PATH] [--conditions LIST] [--ask-every K] [--kernels PATH]
//
// The document: the first --doc-chars characters of WikiText-2 (4,000: about 1k tokens), then
// N typed characters from the text that follows, one suggest() every T ms (a typist at ~80
// words a minute) and a P ms pause after each sentence end, when the background may work.
// Keystroke -> first token = the suggest() call's wall time minus its decode time after the
// first token (random-weight models may sample tokens that print nothing, so the first
// streamed piece is not a reliable mark). Synthetic models are written to a temp dir with the
// tokenizer of --tokenizer (default: the demo client model's 8k BPE vocabulary). --kernels picks
// the CPU matmul path (cpu::force_kernel_path; default: the best this CPU has).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../tests/server_process.h"
#include "tandem/assistant.h"
#include "tandem/cpu_matmul.h"
#include "tandem/synthetic_model.h"

using namespace tandem;
using Clock = std::chrono::steady_clock;

#ifndef TANDEM_CLOUD_BIN
#define TANDEM_CLOUD_BIN ""
#endif

struct Options {
    std::string shared = "../shared", model, synthetic, weights = "q8_0", tokenizer, backend = "auto";
    std::string cloud_bin = TANDEM_CLOUD_BIN, conditions = "0,500,off", kernels;
    int keys = 150, interval_ms = 120, pause_ms = 2000, ask_every = 0;
    size_t doc_chars = 4000;
};

struct Result {
    std::vector<double> ms;        // keystroke -> first token, every keystroke
    std::vector<double> swap_ms;   // keystrokes that were the first to use new notes
    std::vector<double> after_ask_ms;  // keystrokes right after an ask() (--ask-every)
    double after_ask_reused = 0, after_ask_prompt = 0;
    double cold_ms = 0, mean_reused = 0, mean_prompt = 0;
    int memory_events = 0;
    UsageTotals usage;
};

static double pct(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, (size_t)(p * (double)v.size()))];
}

static std::string ids_of(const SuggestResult& r) {
    std::string s;
    for (const auto& n : r.memory) s += n.id + ",";
    return s;
}

static Result run(const Options& o, const std::string& model, const std::string& text, const std::string& cloud_url,
                  const std::string& db, bool background) {
    AssistantConfig c;
    c.model_path = model;
    c.backend = o.backend;
    c.n_ctx = 2048;
    c.memory_db = db;
    c.cloud_url = cloud_url;
    c.suggestion_tokens = 4;
    c.background_reeval = background;
    Result res;
    std::mutex mu;
    auto a = Assistant::create(c, [&](const AssistantEvent& e) {
        std::lock_guard<std::mutex> lk(mu);
        if (e.kind == EventKind::MemoryUpdated || e.kind == EventKind::MemoryRequested) res.memory_events++;
        if (e.kind == EventKind::ModelLoaded || e.kind == EventKind::GpuNotUsed)
            std::printf("  [%s] %s\n", event_kind_name(e.kind), e.message.c_str());
    });
    size_t cursor = o.doc_chars;
    while (cursor < text.size() && text[cursor] != ' ') cursor++;
    auto timed = [&](size_t at, SuggestResult& r) {
        const auto t0 = Clock::now();
        r = a->suggest(text, at);
        const double wall = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        return r.stats.completion_tokens > 0 ? wall - r.stats.decode_ms : wall;
    };
    SuggestResult r;
    res.cold_ms = timed(cursor, r);  // the first suggestion evaluates the whole document
    std::string notes = ids_of(r);
    double reused = 0, prompt = 0;
    bool asked = false;
    for (int k = 0; k < o.keys && cursor < text.size(); k++) {
        cursor++;
        const auto t0 = Clock::now();
        const double ms = timed(cursor, r);
        res.ms.push_back(ms);
        if (asked) {
            res.after_ask_ms.push_back(ms);
            res.after_ask_reused += (double)r.stats.reused_tokens;
            res.after_ask_prompt += (double)r.stats.prompt_tokens;
            asked = false;
        }
        if (o.ask_every > 0 && k % o.ask_every == o.ask_every - 1) {
            AskOptions ao;
            ao.private_query = true;  // the local model answers
            ao.max_tokens = 8;
            a->ask("Summarize the text in one sentence.", "", ao);
            asked = true;
        }
        if (ids_of(r) != notes) res.swap_ms.push_back(ms), notes = ids_of(r);
        reused += (double)r.stats.reused_tokens;
        prompt += (double)r.stats.prompt_tokens;
        const char typed = text[cursor - 1];
        const int wait = (typed == '.' || typed == '\n') ? o.pause_ms : o.interval_ms;
        std::this_thread::sleep_until(t0 + std::chrono::milliseconds(wait));
    }
    res.mean_reused = reused / (double)res.ms.size();
    res.mean_prompt = prompt / (double)res.ms.size();
    if (!res.after_ask_ms.empty()) {
        res.after_ask_reused /= (double)res.after_ask_ms.size();
        res.after_ask_prompt /= (double)res.after_ask_ms.size();
    }
    res.usage = a->usage();
    return res;
}

static std::string write_synthetic(const Options& o, const std::string& dir) {
    SyntheticModelSpec s;
    if (o.synthetic == "100m") {
        // ~102M parameters: 12 layers, 768 wide, 12/4 heads, FFN 2560, the 8k demo vocabulary
        s.n_layer = 12, s.n_embd = 768, s.n_head = 12, s.n_head_kv = 4, s.n_ff = 2560, s.n_vocab = 8192, s.n_ctx = 4096;
    } else if (o.synthetic == "llama-1b") {
        // Llama-3.2-1B's shape: 16 layers, 2048 wide, 32/8 heads, FFN 8192, 128256 ids (the
        // 8k vocabulary padded with reserved tokens), tied embeddings, Llama 3 rope
        s.n_layer = 16, s.n_embd = 2048, s.n_head = 32, s.n_head_kv = 8, s.n_ff = 8192, s.n_vocab = 128256, s.n_ctx = 8192;
        s.tied_embeddings = true, s.llama3_rope = true, s.rope_freq_base = 500000.0f;
    } else {
        throw std::runtime_error("--synthetic must be 100m or llama-1b, not '" + o.synthetic + "'");
    }
    if (o.weights == "q8_0") s.weight_type = s.embd_type = GgmlType::Q8_0;
    else if (o.weights == "q4_0") s.weight_type = s.embd_type = GgmlType::Q4_0;
    else throw std::runtime_error("--weights must be q8_0 or q4_0, not '" + o.weights + "'");
    s.tokenizer_from = o.tokenizer.empty() ? o.shared + "/models/tandem-demo-client-q8_0.gguf" : o.tokenizer;
    const int64_t d = s.n_embd, kv = d / s.n_head * s.n_head_kv;
    const int64_t params = s.n_layer * (2 * d * d + 2 * d * kv + 3 * d * s.n_ff) + (s.tied_embeddings ? 1 : 2) * d * s.n_vocab;
    const std::string path = dir + "/synthetic-" + o.synthetic + "-" + o.weights + ".gguf";
    const auto t0 = Clock::now();
    write_synthetic_model(s, path);
    std::printf("synthetic %s model: %.1fM parameters, %s, written in %.1f s\n", o.synthetic.c_str(), (double)params / 1e6,
                o.weights.c_str(), std::chrono::duration<double>(Clock::now() - t0).count());
    return path;
}

int main(int argc, char** argv) {
    Options o;
    const char* usage =
        "usage: bench-keystroke [--model GGUF | --synthetic 100m|llama-1b [--weights q8_0|q4_0] [--tokenizer GGUF]]\n"
        "       [--keys N] [--interval-ms T] [--pause-ms P] [--doc-chars C] [--backend auto|cpu|cuda] [--shared DIR]\n"
        "       [--cloud-bin PATH] [--conditions 0,500,off] [--ask-every K] [--kernels PATH]\n";
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        auto val = [&]() -> std::string {
            if (i + 1 >= argc) { std::fprintf(stderr, "%s needs a value\n%s", a.c_str(), usage); std::exit(2); }
            return argv[++i];
        };
        if (a == "--help" || a == "-h") { std::printf("%s", usage); return 0; }
        if (a == "--model") o.model = val();
        else if (a == "--synthetic") o.synthetic = val();
        else if (a == "--weights") o.weights = val();
        else if (a == "--tokenizer") o.tokenizer = val();
        else if (a == "--keys") o.keys = std::atoi(val().c_str());
        else if (a == "--interval-ms") o.interval_ms = std::atoi(val().c_str());
        else if (a == "--pause-ms") o.pause_ms = std::atoi(val().c_str());
        else if (a == "--doc-chars") o.doc_chars = (size_t)std::atol(val().c_str());
        else if (a == "--backend") o.backend = val();
        else if (a == "--shared") o.shared = val();
        else if (a == "--cloud-bin") o.cloud_bin = val();
        else if (a == "--conditions") o.conditions = val();
        else if (a == "--ask-every") o.ask_every = std::atoi(val().c_str());
        else if (a == "--kernels") o.kernels = val();
        else { std::fprintf(stderr, "%s", usage); return 2; }
    }
    if (!o.kernels.empty()) {
        try {
            cpu::force_kernel_path(o.kernels.c_str());
        } catch (const std::exception& e) {
            std::fprintf(stderr, "bench-keystroke: --kernels %s: %s\n", o.kernels.c_str(), e.what());
            return 2;
        }
    }
    std::ifstream in(o.shared + "/corpus/wikitext-2-test.raw");
    if (!in) { std::fprintf(stderr, "bench-keystroke: cannot read %s/corpus/wikitext-2-test.raw\n", o.shared.c_str()); return 1; }
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string all = ss.str();
    const std::string text = all.substr(0, o.doc_chars + 4000);
    char tmpl[] = "/tmp/tandem-keystroke-XXXXXX";
    const std::string dir = mkdtemp(tmpl);
    int status = 0;
    try {
        std::string model = o.model;
        if (!o.synthetic.empty()) model = write_synthetic(o, dir);
        if (model.empty()) model = o.shared + "/models/tandem-demo-client-q8_0.gguf";
        // the cloud's documents: the WikiText text after the document, so memory requests find passages
        std::ofstream(dir + "/doc.txt") << all.substr(o.doc_chars + 4000, 200000);
        std::printf("model %s; %d keystrokes per condition, one every %d ms, %d ms after a sentence end; suggestion 4 tokens;"
                    " document %zu characters\n\n", model.c_str(), o.keys, o.interval_ms, o.pause_ms, o.doc_chars);
        std::printf("| cloud | background re-eval | first-token p50 (ms) | p95 (ms) | max (ms) | first keystroke with new notes: n, max (ms) |"
                    " prompt tokens | reused per keystroke | background runs / stopped | background tokens, last run (ms) |"
                    " full window (ms) |\n"
                    "|---|---|---|---|---|---|---|---|---|---|---|\n");
        std::stringstream conds(o.conditions);
        for (std::string cond; std::getline(conds, cond, ',');) {
            const bool background = cond != "off";
            const int delay = cond == "500" ? 500 : 0;
            std::vector<std::string> args = {"--port", "0", "--corpus", dir + "/doc.txt", "--db", dir + "/cloud-" + cond + ".db"};
            if (delay > 0) {
                const std::string d = "delay:" + std::to_string(delay) + "*10000";
                args.push_back("--faults");
                args.push_back("/v1/memory/requests=" + d + ";/v1/memory/changes=" + d);
            }
            tandem_test::ServerProcess cloud(o.cloud_bin, args);
            const Result r = run(o, model, text, cloud.url(), dir + "/mem-" + cond + ".db", background);
            std::printf("| %s | %s | %.1f | %.1f | %.1f | %zu, %.1f | %.0f | %.0f | %lld / %lld | %lld, %.0f | %.0f |\n",
                        delay ? "+500 ms per memory call" : "answers at once", background ? "on" : "off", pct(r.ms, 0.5),
                        pct(r.ms, 0.95), pct(r.ms, 1.0), r.swap_ms.size(), pct(r.swap_ms, 1.0), r.mean_prompt, r.mean_reused,
                        (long long)r.usage.background_runs, (long long)r.usage.background_cancels,
                        (long long)r.usage.background_tokens, r.usage.last_background_ms, r.cold_ms);
            if (!r.after_ask_ms.empty())
                std::printf("|   | after an ask (%zu asks) | %.1f | %.1f | %.1f | | %.0f | %.0f | | | |\n", r.after_ask_ms.size(),
                            pct(r.after_ask_ms, 0.5), pct(r.after_ask_ms, 0.95), pct(r.after_ask_ms, 1.0), r.after_ask_prompt,
                            r.after_ask_reused);
            std::fflush(stdout);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench-keystroke: %s\n", e.what());
        status = 1;
    }
    const std::string rm = "rm -rf '" + dir + "'";
    if (std::system(rm.c_str()) != 0) status = 1;
    return status;
}
