// Keystroke -> first suggestion token, through tandem::Assistant with prefix reuse and memory
// sync running against the real tandem-cloud, once with the cloud answering at once and once
// with 500 ms added to every memory call: suggestion latency must not depend on the cloud's.
//
// usage: bench-keystroke [--model GGUF] [--keys N] [--shared DIR]
// The document: the first ~4,000 characters of WikiText-2 (about 1k tokens), then N typed
// characters from the text that follows, one suggest() per keystroke.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../tests/server_process.h"
#include "tandem/assistant.h"

using namespace tandem;

struct Result {
    double p50, p95, mean_reused, mean_prompt;
    int memory_events;
};

static double pct(std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, (size_t)(p * (double)v.size()))];
}

static Result run(const std::string& model, const std::string& text, const std::string& cloud_url, int keys,
                  const std::string& db) {
    AssistantConfig c;
    c.model_path = model;
    c.backend = "auto";
    c.n_ctx = 2048;
    c.memory_db = db;
    c.cloud_url = cloud_url;
    c.suggestion_tokens = 4;
    int memory_events = 0;
    auto a = Assistant::create(c, [&](const AssistantEvent& e) {
        if (e.kind == EventKind::MemoryUpdated || e.kind == EventKind::MemoryRequested) memory_events++;
    });
    size_t cursor = 4000;
    while (cursor < text.size() && text[cursor] != ' ') cursor++;
    std::vector<double> ttft;
    double reused = 0, prompt = 0;
    a->suggest(text, cursor);  // the first suggestion evaluates the whole document
    for (int k = 0; k < keys && cursor < text.size(); k++) {
        cursor++;
        const auto t0 = std::chrono::steady_clock::now();
        double first = -1;
        const SuggestResult r = a->suggest(text, cursor, [&](std::string_view) {
            if (first < 0) first = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            return true;
        });
        if (first < 0) first = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        ttft.push_back(first);
        reused += (double)r.stats.reused_tokens;
        prompt += (double)r.stats.prompt_tokens;
    }
    return {pct(ttft, 0.5), pct(ttft, 0.95), reused / (double)ttft.size(), prompt / (double)ttft.size(), memory_events};
}

int main(int argc, char** argv) {
    std::string shared = "../shared", model;
    int keys = 150;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--model" && i + 1 < argc) model = argv[++i];
        else if (a == "--keys" && i + 1 < argc) keys = std::atoi(argv[++i]);
        else if (a == "--shared" && i + 1 < argc) shared = argv[++i];
        else { std::fprintf(stderr, "usage: bench-keystroke [--model GGUF] [--keys N] [--shared DIR]\n"); return 2; }
    }
    if (model.empty()) model = shared + "/models/tandem-demo-client-q8_0.gguf";
    std::ifstream in(shared + "/corpus/wikitext-2-test.raw");
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str().substr(0, 8000);
    char tmpl[] = "/tmp/tandem-keystroke-XXXXXX";
    const std::string dir = mkdtemp(tmpl);
    // the cloud's documents: the same WikiText text, so memory requests find passages
    std::ofstream(dir + "/doc.txt") << ss.str().substr(8000, 200000);
    std::printf("model %s, %d keystrokes per condition, suggestion 4 tokens, document ~1k tokens\n\n", model.c_str(), keys);
    std::printf("| cloud | first-token p50 (ms) | p95 (ms) | prompt tokens | reused per keystroke | memory events |\n|---|---|---|---|---|---|\n");
    for (int delay : {0, 500}) {
        std::vector<std::string> args = {"--port", "0", "--corpus", dir + "/doc.txt", "--db", dir + "/cloud-" + std::to_string(delay) + ".db"};
        if (delay > 0) {
            const std::string d = "delay:" + std::to_string(delay) + "*10000";
            args.push_back("--faults");
            args.push_back("/v1/memory/requests=" + d + ";/v1/memory/changes=" + d);
        }
        tandem_test::ServerProcess cloud(TANDEM_CLOUD_BIN, args);
        const Result r = run(model, text, cloud.url(), keys, dir + "/mem-" + std::to_string(delay) + ".db");
        std::printf("| %s | %.1f | %.1f | %.0f | %.0f | %d |\n", delay ? "+500 ms per memory call" : "answers at once", r.p50,
                    r.p95, r.mean_prompt, r.mean_reused, r.memory_events);
        std::fflush(stdout);
    }
    std::string rm = "rm -rf '" + dir + "'";
    return std::system(rm.c_str()) == 0 ? 0 : 1;
}
