// The routing report (issue 8): det, prob and trans routers trained on the train split, their
// L2 strength and threshold chosen on the calibration split, and everything measured on the
// test split: the quality-vs-cloud-share curve against all-local, all-cloud, random and
// oracle, APGR, the quality drop at 10/20/40% of queries kept local (the Hybrid LLM paper's
// Table 1), and paired bootstrap intervals where routers are compared.
//
// Quality, curves, APGR and drop % are router_eval.h's definitions (the same code computes the
// curve); this file adds the per-query vectors the bootstrap needs.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "routing_data.h"
#include "tandem/router_eval.h"
#include "text_metrics.h"

namespace tandem::eval {

// ---- per-query routing arithmetic (shared with the bootstrap) -------------------------------

// Per-query quality when the k_cloud lowest-scored queries go to the cloud (ties: earlier row
// first, as router_eval.h): q_large[i] for those, q_small[i] for the rest. All (N).
std::vector<double> routed_qualities(const std::vector<double>& scores, const std::vector<double>& q_small,
                                     const std::vector<double>& q_large, size_t k_cloud);
// APGR of a score vector, exactly as evaluate_router computes it (grid of 101 shares,
// trapezoid); NaN when mean q_small == mean q_large.
double apgr_of_scores(const std::vector<double>& scores, const std::vector<double>& q_small,
                      const std::vector<double>& q_large);
// The number of queries sent to the cloud at cloud share `share` (round(share N)).
size_t cloud_count(double share, size_t n);

// 95% percentile bootstrap interval of apgr(a) - apgr(b) (b empty: of apgr(a) alone), both
// scored on the same resampled queries. Resamples whose APGR is undefined are skipped.
Interval bootstrap_apgr(const std::vector<double>& scores_a, const std::vector<double>& scores_b,
                        const std::vector<double>& q_small, const std::vector<double>& q_large, int resamples,
                        uint64_t seed);

// Pearson correlation of a and b (same length >= 2); NaN when either is constant.
double pearson(const std::vector<double>& a, const std::vector<double>& b);

// How much of a query's quality gap (mean large score - mean small score) is signal rather than
// sampling noise: the Pearson r, over the records, between the gap measured on the first half of
// each model's samples and the gap measured on the second half. Near 0: the per-query gap is
// noise, and no router can predict it. NaN when a record has fewer than 2 samples of a model.
// Judge::likelihood has one score per model: NaN.
double gap_split_half_r(const std::vector<RoutingRecord>& records, Judge judge);

// ---- the report ----------------------------------------------------------------------------------

struct ReportOptions {
    std::vector<Judge> judges = {Judge::chrf, Judge::likelihood, Judge::rouge_l};  // first = headline
    std::vector<double> l2_grid = {1e-3, 1e-2, 1e-1, 1.0};  // chosen per router by calibration APGR
    int hash_bits = 16;
    int resamples = 2000;
    uint64_t seed = 1;
};

struct CalibratedPoint {
    double target_local;     // 0.1, 0.2, 0.4: the local share asked for
    double threshold;        // chosen on the calibration split
    double test_local;       // the local share that threshold gives on the test split
    double test_drop_pct;    // and its quality drop vs all-cloud there
};

struct RouterResult {
    LabelMode labels = LabelMode::det;
    double l2 = 0, t = 0;
    double calib_apgr = 0;                     // the APGR that picked l2
    std::vector<double> test_scores;           // (n_test)
    EvalReport test;                           // evaluate_router on the test split
    Interval apgr_ci{};                        // bootstrap of its APGR
    Interval drop_ci[3]{};                     // drop % at local share 0.1/0.2/0.4 (curve), vs all-cloud
    CalibratedPoint calibrated[3]{};
    std::shared_ptr<LogisticRouter> router;    // the trained router (threshold: the 40%-local one)
};

struct Comparison {
    std::string what;    // e.g. "trans - det: APGR", "trans - random: quality at 20% local"
    Interval diff;
};

struct JudgeReport {
    Judge judge = Judge::chrf;
    size_t n_train = 0, n_calib = 0, n_test = 0;
    double q_local = 0, q_cloud = 0;           // test split means
    double small_wins = 0;                     // share of test queries with q_small >= q_large
    double label_mean[3] = {0, 0, 0};          // mean det/prob/trans label on train
    double apgr_random = 0, apgr_oracle = 0;
    double split_half_r = 0;                   // gap_split_half_r over train + calib + test
    double r_logprob = 0, r_entropy = 0;       // Pearson r of each signal with the gap, on train
    double random_drop[3] = {0, 0, 0}, oracle_drop[3] = {0, 0, 0};  // at local 0.1/0.2/0.4
    std::vector<RouterResult> routers;         // det, prob, trans
    std::vector<Comparison> comparisons;
};

// Trains, calibrates and evaluates under one judge. Throws RouterError / RoutingDataError.
JudgeReport make_judge_report(const std::vector<RoutingRecord>& train, const std::vector<RoutingRecord>& calib,
                              const std::vector<RoutingRecord>& test, Judge judge, const ReportOptions& opt);

// The reports as markdown tables (no heading above them) and as one JSON object.
std::string report_markdown(const std::vector<JudgeReport>& reports);
std::string report_json(const std::vector<JudgeReport>& reports);

// One SVG with the three routers' curves, random, oracle, all-local and all-cloud.
std::string combined_curve_svg(const JudgeReport& rep, const std::string& title);

}  // namespace tandem::eval
