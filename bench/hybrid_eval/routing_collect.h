// Collecting the routing data: drafts of a year range -> RoutingRecords, running the small and
// the large model on each draft's prefix (routing_sample.h) and scoring what they wrote
// (routing_data.h).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "drafts.h"
#include "routing_data.h"
#include "routing_sample.h"

namespace tandem::eval {

// One split of the evaluation: the drafts of speeches from min_year..max_year, at most
// `queries` of them (a seeded random subset, one draft per speech).
struct SplitSpec {
    std::string name;  // "train", "calib", "test"
    int min_year = 0, max_year = 0;
    int queries = 0;
};

// The evaluation's three splits (issue 8): 2019-2020 train, 2021 calibration, 2022 test.
std::vector<SplitSpec> default_splits(int n_train, int n_calib, int n_test);

// The drafts of one split: make_drafts over the split's speeches (one per speech), those whose
// truth has at most max_truth_chars bytes (0: any), then the first spec.queries of a seeded
// shuffle (mix64(seed ^ mix64(index + 1)) order). Deterministic.
std::vector<Draft> split_drafts(const std::vector<Speech>& all_speeches, const SplitSpec& spec,
                                const DraftOptions& draft_options, size_t max_truth_chars, uint64_t seed);

struct CollectOptions {
    SampleOptions sample;      // samples per model, tokens, sampler
    int entropy_steps = 4;     // Engine::signals' k (the SDK's Assistant uses 4)
    uint64_t seed = 8;
};

// Runs both models on one draft and scores the result. Sample seeds derive from opt.seed and
// the draft (speech id, cut), so a draft's samples do not depend on the other drafts.
// The two engines must share the tokenizer (the demo pair does); throws std::invalid_argument
// otherwise, and whatever the engine throws (ContextFull for a prefix that does not fit).
RoutingRecord collect_record(Engine& small, Engine& large, const Draft& d, const CollectOptions& opt);

// One worker's models: the small and the large engine (each used by that worker only).
struct EnginePair {
    Engine* small = nullptr;
    Engine* large = nullptr;
};

// collect_record for every draft, on workers.size() threads (draft i on a worker that takes it
// from a shared counter; each worker uses only its own engines). The records come back, and are
// written to `jsonl_path` (truncated), in draft order; the results do not depend on the worker
// count. `progress(done, total)` is called under a lock after each record. The first exception
// of any worker stops the others and is rethrown.
std::vector<RoutingRecord> collect_split(const std::vector<EnginePair>& workers, const std::vector<Draft>& drafts,
                                         const CollectOptions& opt, const std::string& jsonl_path,
                                         const std::function<void(size_t, size_t)>& progress = {});

}  // namespace tandem::eval
