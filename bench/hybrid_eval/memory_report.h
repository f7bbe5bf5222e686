// The memory experiment's results (bench-hybrid-memory): per-draft scores for each condition,
// keystroke latencies, and the report written from them: memory.json (everything, per draft),
// memory.md (the tables) and memory-gain.svg (differences vs no memory with 95% intervals).
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace tandem::eval {

// One draft under one condition.
struct DraftScore {
    double nll = 0;            // mean negative log-likelihood (nats/token) of the true continuation
    int tokens = 0;            // its tokens
    double rouge = 0, chrf = 0;  // of the greedy continuation vs the truth (ROUGE-L F1 0..1, chrF 0..100)
    int memory_tokens = 0;     // tokens of the memory block in the prompt
    int prompt_tokens = 0;
    bool window_cut = false;   // the SDK cut the document window to fit n_ctx
    std::string continuation;  // greedy, cut at the first sentence end
};

struct Condition {
    std::string name;   // "none", "notes", ...
    std::string model;  // "client" or "cloud"
    std::string what;   // one line for the table
    std::vector<DraftScore> scores;  // one per draft, in draft order
};

struct LatencySeries {
    std::string path;   // "async (Assistant)", "sync (wait for notes)", "cloud-only RAG (chat stream)"
    int delay_ms = 0;   // added by the cloud for each memory / chat call
    std::vector<double> ttft_ms;
    std::string what;
};

struct MemoryReport {
    nlohmann::json settings;     // the run's parameters, the command, the machine
    nlohmann::json drafts;       // per draft: id, truth, notes ... (written as is)
    nlohmann::json phases;       // seconds per phase
    std::vector<Condition> conditions;
    std::vector<LatencySeries> latency;
    int resamples = 2000;
    uint64_t seed = 1;
};

// Writes memory.json, memory.md and memory-gain.svg into dir (which must exist). Paired
// comparisons: every condition vs "none", and notes vs raw / stale / unrelated, cloud_rag vs
// notes, when those conditions exist. Throws std::runtime_error naming a file it cannot write.
void write_memory_report(const MemoryReport& r, const std::string& dir);

// The markdown tables alone (also the program's stdout).
std::string memory_markdown(const MemoryReport& r);

}  // namespace tandem::eval
