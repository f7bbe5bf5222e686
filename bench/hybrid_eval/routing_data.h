// Routing data for the Hybrid LLM evaluation (issue 8): one record per query (a draft's prefix),
// with sampled continuations of the small and the large model, their scores against the true
// next sentence, and the small model's own signals. Model-free: the engine side is in
// routing_sample.h.
//
// One record is one JSONL line that `tandem router train` reads directly (router_train.h's
// format; the router ignores the other fields):
//
//   field                | type              | what
//   ---------------------+-------------------+-----------------------------------------------
//   query                | string            | the draft's prefix (what the writer has so far)
//   small_scores         | [n_samples] num   | chrF of each small-model sample vs the truth
//   large_scores         | [n_samples] num   | chrF of each large-model sample vs the truth
//   query_logprob_mean   | number            | small model's mean token log-prob of the query
//   gen_entropy          | number            | small model's mean entropy over 4 greedy steps
//   id, country, year    | string, str, int  | the draft's speech
//   truth                | string            | the true next sentence
//   small_samples        | [n] string        | the small model's continuations (first sentence)
//   large_samples        | [n] string        | the same for the large model
//   small_rouge_l        | [n] num           | ROUGE-L F1 of each small sample vs the truth
//   large_rouge_l        | [n] num           | the same for the large model
//   small_truth_ll       | number            | small model's mean token log-prob of the truth
//   large_truth_ll       | number            | large model's mean token log-prob of the truth
//   small_ms, large_ms   | number            | wall time spent in each model for this query
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/router_train.h"

namespace tandem::eval {

class RoutingDataError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// ---- sentences ------------------------------------------------------------------------------

// Sentences are what the reference cloud's splitter (examples/cloud_server/corpus.h,
// tandem::cloud::split_sentences) says they are, the splitter that cut the drafts' truth: after
// . ! ? followed by white space (not after abbreviations such as "Mr.") and at line breaks.

// True once `text` holds a whole first sentence: the splitter finds a second one starting (so
// a generation can stop one token after the sentence's end).
bool first_sentence_complete(std::string_view text);

// The first sentence of a generated continuation, trimmed; all of it when no sentence is
// complete (generation hit its token limit); "" when it is only white space.
std::string first_sentence(std::string_view generated);

// ---- records ----------------------------------------------------------------------------------

struct RoutingRecord {
    std::string id, country;
    int year = 0;
    std::string query;                            // the prefix
    std::string truth;                            // the true next sentence
    std::vector<std::string> small_samples;       // (n_small) first sentences
    std::vector<std::string> large_samples;       // (n_large)
    std::vector<double> small_chrf, large_chrf;   // (n_small), (n_large) in [0, 100]
    std::vector<double> small_rouge, large_rouge; // (n_small), (n_large) in [0, 1]
    double small_truth_ll = 0, large_truth_ll = 0;  // mean token log-prob of the truth (<= 0)
    double query_logprob_mean = 0, gen_entropy = 0; // the small model's router signals
    double small_ms = 0, large_ms = 0;
};

// Fills small_/large_chrf and _rouge from the samples and the truth (text_metrics.h).
void score_record(RoutingRecord& r);

// One JSONL line (no newline) in the format above. Throws RoutingDataError when the score
// arrays do not match the samples or a number is not finite (the router would refuse it).
std::string record_to_jsonl(const RoutingRecord& r);
// Reads one line back; `where` ("FILE:LINE") prefixes every error, which names the field.
RoutingRecord record_from_jsonl(std::string_view line, const std::string& where);
// Reads a whole file (blank lines skipped). Throws RoutingDataError naming FILE:LINE.
std::vector<RoutingRecord> load_records(const std::string& path);

// ---- judges -----------------------------------------------------------------------------------

// Which quality score the router's dataset uses:
//   chrf       : chrF of each sample (n samples per model; the headline)
//   rouge_l    : ROUGE-L F1 of each sample
//   likelihood : each model's mean token log-prob of the truth (one score per model; a cheap
//                judge with no sampling: how well the model predicts what the writer wrote)
enum class Judge { chrf, rouge_l, likelihood };
const char* judge_name(Judge j);
Judge parse_judge(const std::string& s);  // throws RoutingDataError listing the names

// The router's dataset under a judge: query, the judge's scores and both signals per row.
// `name` names the dataset in router errors.
Dataset to_dataset(const std::vector<RoutingRecord>& records, Judge judge, const std::string& name);

}  // namespace tandem::eval
