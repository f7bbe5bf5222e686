// Training data, Hybrid LLM labels and the trainers of the logistic and MLP routers (the
// router tools library, tandem_router_tools: the CLI and bench link it, apps do not).
//
// Training data is JSONL, one object a line (blank lines skipped):
//
//   field               | type                         | required
//   --------------------+------------------------------+---------------------------------------
//   query               | string                       | yes
//   small_scores        | non-empty array of numbers   | yes: sampled quality scores, small model
//   large_scores        | non-empty array of numbers   | yes: same for the large (cloud) model
//   query_logprob_mean  | number                       | no: RouterSignals::query_logprob_mean
//   gen_entropy         | number                       | no: RouterSignals::gen_entropy
//   memory_coverage     | number                       | no: RouterSignals::memory_coverage
//
// Other fields are ignored. A signal field must be in every row or in none (the first row
// decides); a router trained on the file uses the signals present. Every error names
// "FILE:LINE: field 'F': why". Numbers must be finite.
//
// Labels (y in [0,1], 1 = the small model is as good), with s = small_scores, l = large_scores:
//   det   : y = [s_0 >= l_0]                      (the first sample of each)
//   prob  : y = (1/(|s||l|)) sum_i sum_j [s_i >= l_j]
//   trans : y(t) = (1/(|s||l|)) sum_i sum_j [s_i >= l_j - t], with t the first maximiser of
//           D(t) = (1/N^2) sum_a sum_b |y_a(t) - y_b(t)| over the grid t_g = (R*g)/G,
//           g = 0..G (G = 200), R = max(0, max over rows of (max l - min s)).
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/router.h"
#include "tandem/router_mlp.h"

namespace tandem {

struct TrainingRow {
    std::string query;
    std::vector<double> small_scores;  // (n_small) >= 1
    std::vector<double> large_scores;  // (n_large) >= 1
    RouterSignals signals;
    int line = 0;                      // 1-based line in the file (0 when built in memory)
};

struct Dataset {
    std::string file;                  // names the source in errors
    std::vector<TrainingRow> rows;
    std::vector<Signal> signals;       // signals present in every row, kSignalNames order
};

// Reads a JSONL file / text. Throws RouterError "FILE:LINE: field 'F': why" (or "FILE: ..."
// when the file cannot be read or holds no rows).
Dataset load_routing_jsonl(const std::string& path);
Dataset parse_routing_jsonl(std::string_view text, const std::string& name);
// One JSONL line per row (signals included when set); parse_routing_jsonl reads it back.
std::string dataset_to_jsonl(const Dataset& d);

// Mean of the scores (the quality of the answer of that model).
double mean_quality(const std::vector<double>& scores);

// ---- labels -------------------------------------------------------------------------------
double label_det(const TrainingRow& r);
double label_prob(const TrainingRow& r);
double label_trans(const TrainingRow& r, double t);
// D = (1/N^2) sum_a sum_b |y_a - y_b| (0 for N = 0). O(N log N).
double mean_pairwise_difference(std::vector<double> labels);
constexpr int kTransGridSteps = 200;
// The trans relaxation t chosen by grid search (see the header comment).
double choose_trans_t(const std::vector<TrainingRow>& rows, int grid_steps = kTransGridSteps);
// Labels for every row; for trans also chooses t (written to *t_out, else 0).
std::vector<double> make_labels(const std::vector<TrainingRow>& rows, LabelMode mode, double* t_out);

// ---- training -----------------------------------------------------------------------------
struct TrainOptions {
    LabelMode labels = LabelMode::det;
    int hash_bits = 16;           // FeatureConfig::hash_bits
    bool bigrams = true;
    double l2 = 1e-3;             // lambda in loss = mean cross-entropy + lambda/2 |w|^2 (no bias)
    int max_iters = 300;          // L-BFGS iterations
    double grad_tol = 1e-6;       // stop when the gradient's max-norm falls below
    double threshold = 0.5;       // the saved router's initial threshold
};

// Fits the logistic router by L-BFGS (memory 10, backtracking Armijo line search) on the
// full batch, from zero weights: deterministic (same data and options -> same weights).
// Uses the dataset's signals. Throws RouterError on an empty dataset or bad options.
std::unique_ptr<LogisticRouter> train_logistic_router(const Dataset& data, const TrainOptions& opt);

// The MLP router's own options (tandem/router_mlp.h describes the model).
struct MlpOptions {
    int hidden = 8;        // H, 1..MlpRouter::kMaxHidden
    int steps = 300;       // Adam steps (full batch)
    double lr = 0.02;      // Adam learning rate (beta1 0.9, beta2 0.999, eps 1e-8)
    uint64_t seed = 1;     // initialisation
};

// Trains the MLP router (opt: labels, hash_bits, bigrams, l2, threshold; max_iters and
// grad_tol are not used). Throws RouterError like train_logistic_router.
std::unique_ptr<MlpRouter> train_mlp_router(const Dataset& data, const TrainOptions& opt, const MlpOptions& mlp = {});

}  // namespace tandem
