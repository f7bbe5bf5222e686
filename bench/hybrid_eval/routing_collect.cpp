// Drafts -> routing records: both models on each prefix, scored against the truth.
#include "routing_collect.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <chrono>
#include <fstream>
#include <numeric>
#include <stdexcept>

namespace tandem::eval {

using Clock = std::chrono::steady_clock;
static double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

std::vector<SplitSpec> default_splits(int n_train, int n_calib, int n_test) {
    return {{"train", 2019, 2020, n_train}, {"calib", 2021, 2021, n_calib}, {"test", 2022, 2022, n_test}};
}

std::vector<Draft> split_drafts(const std::vector<Speech>& all_speeches, const SplitSpec& spec,
                                const DraftOptions& draft_options, size_t max_truth_chars, uint64_t seed) {
    if (spec.queries < 0) throw std::invalid_argument("split '" + spec.name + "': queries must be >= 0");
    std::vector<Speech> speeches;
    for (const Speech& s : all_speeches)
        if (s.year >= spec.min_year && s.year <= spec.max_year) speeches.push_back(s);
    DraftOptions o = draft_options;
    o.drafts_per_speech = 1;
    std::vector<Draft> drafts;
    for (Draft& d : make_drafts(speeches, o, seed))
        if (max_truth_chars == 0 || d.truth.size() <= max_truth_chars) drafts.push_back(std::move(d));
    std::vector<uint64_t> key(drafts.size());
    for (size_t i = 0; i < drafts.size(); i++) key[i] = mix64(seed ^ mix64(i + 1));
    std::vector<size_t> order(drafts.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return key[a] < key[b]; });
    std::vector<Draft> out;
    for (size_t i = 0; i < order.size() && (int)out.size() < spec.queries; i++) out.push_back(drafts[order[i]]);
    return out;
}

static uint64_t fnv1a64(const std::string& s) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
}

RoutingRecord collect_record(Engine& small, Engine& large, const Draft& d, const CollectOptions& opt) {
    if (small.model().config().n_vocab != large.model().config().n_vocab)
        throw std::invalid_argument("the small and the large model must share the tokenizer (vocabularies of " +
                                    std::to_string(small.model().config().n_vocab) + " and " +
                                    std::to_string(large.model().config().n_vocab) + " tokens)");
    const PromptTokens pt = tokenize_prompt_and_truth(small.tokenizer(), d.prefix, d.gap, d.truth);
    const uint64_t seed = mix64(opt.seed ^ fnv1a64(d.speech_id + "#" + std::to_string(d.cut_sentence)));
    RoutingRecord r;
    r.id = d.speech_id + "#" + std::to_string(d.cut_sentence);
    r.country = d.country;
    r.year = d.year;
    r.query = d.prefix;
    r.truth = d.truth;

    auto t0 = Clock::now();
    // The router's signals first: their prefill (all logits) also leaves the prompt cached for
    // the samples and the truth's likelihood.
    const Engine::Signals sig = small.signals(pt.prompt, opt.entropy_steps);
    r.query_logprob_mean = sig.logprob_mean;
    r.gen_entropy = sig.gen_entropy;
    r.small_samples = sample_continuations(small, pt.prompt, opt.sample, seed).sentences;
    r.small_truth_ll = continuation_logprob_mean(small, pt.prompt, pt.truth);
    r.small_ms = ms_since(t0);

    t0 = Clock::now();
    r.large_samples = sample_continuations(large, pt.prompt, opt.sample, mix64(seed)).sentences;
    r.large_truth_ll = continuation_logprob_mean(large, pt.prompt, pt.truth);
    r.large_ms = ms_since(t0);

    score_record(r);
    return r;
}

std::vector<RoutingRecord> collect_split(const std::vector<EnginePair>& workers, const std::vector<Draft>& drafts,
                                         const CollectOptions& opt, const std::string& jsonl_path,
                                         const std::function<void(size_t, size_t)>& progress) {
    if (workers.empty()) throw std::invalid_argument("collect_split needs at least one worker");
    for (const EnginePair& w : workers)
        if (!w.small || !w.large) throw std::invalid_argument("collect_split: a worker has no engine");
    std::ofstream f(jsonl_path, std::ios::trunc);
    if (!f) throw RoutingDataError(jsonl_path + ": cannot open for writing");
    std::vector<RoutingRecord> out(drafts.size());
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex mu;
    size_t done = 0;
    std::exception_ptr error;
    auto work = [&](const EnginePair& w) {
        for (size_t i; !failed && (i = next.fetch_add(1)) < drafts.size();) {
            try {
                out[i] = collect_record(*w.small, *w.large, drafts[i], opt);
            } catch (...) {
                std::lock_guard<std::mutex> lk(mu);
                if (!error) error = std::current_exception();
                failed = true;
                return;
            }
            std::lock_guard<std::mutex> lk(mu);
            if (progress) progress(++done, drafts.size());
        }
    };
    std::vector<std::thread> threads;
    for (size_t t = 1; t < workers.size(); t++) threads.emplace_back(work, workers[t]);
    work(workers[0]);
    for (std::thread& t : threads) t.join();
    if (error) std::rethrow_exception(error);
    for (const RoutingRecord& r : out) f << record_to_jsonl(r) << '\n';
    f.flush();
    if (!f) throw RoutingDataError(jsonl_path + ": write failed");
    return out;
}

}  // namespace tandem::eval
