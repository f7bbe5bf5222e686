// Evaluating and calibrating a router on a labelled JSONL set (router_train.h's format).
//
// Quality of a query = the mean of the scores of the model that answered it. For a router,
// sending the k lowest-scored queries to the cloud (ties: earlier row first) gives one point
// (cloud share k/N, mean quality). The curve is sampled at cloud shares c_g = g/100,
// g = 0..100, with k = round(c_g N). Baselines on the same grid: all-local (quality Q_local
// at every share), all-cloud (Q_cloud), random (mean over seeds 0..9 of RandomRouter's curve),
// oracle (the k queries with the largest q_large - q_small go to the cloud).
//
// PGR(c) = (Q_router(c) - Q_local) / (Q_cloud - Q_local); APGR = trapezoid integral of PGR
// over c in [0,1] on the grid (NaN when Q_cloud == Q_local). Random scores about 0.5.
// quality drop % at cloud share c = 100 (Q_cloud - Q_router(c)) / |Q_cloud|.
#pragma once
#include <string>
#include <vector>

#include "tandem/router_train.h"

namespace tandem {

// The router's score of every row (signals from the rows). Throws like Router::score.
std::vector<double> router_scores(const Router& r, const Dataset& d);

struct CurvePoint {
    double cloud_share;
    double router, random, oracle;  // mean quality
};

struct EvalReport {
    size_t n = 0;
    double q_local = 0, q_cloud = 0;
    std::vector<CurvePoint> curve;          // 101 points
    double apgr = 0, apgr_random = 0, apgr_oracle = 0;
    // At the router's threshold:
    double threshold = 0, cloud_fraction = 0, quality = 0, quality_drop_pct = 0;
    // Quality drop % at local shares 0.1, 0.2, 0.4 (cloud shares 0.9, 0.8, 0.6), router and
    // random.
    double drop_at_local[3] = {0, 0, 0};
    double random_drop_at_local[3] = {0, 0, 0};
};
constexpr double kLocalShares[3] = {0.1, 0.2, 0.4};

// Evaluates the router on d. Throws RouterError on an empty dataset.
EvalReport evaluate_router(const Router& r, const Dataset& d);

// Mean quality when the queries with score < threshold go to the cloud.
double quality_at_threshold(const std::vector<double>& scores, const Dataset& d, double threshold,
                            double* cloud_fraction);
// Mean quality when the k lowest-scored rows (stable order) go to the cloud.
double quality_at_cloud_count(const std::vector<double>& scores, const Dataset& d, size_t k);

struct Calibration {
    double threshold;
    double cloud_fraction;    // realised on the calibration set
    double quality_drop_pct;  // vs all-cloud on the calibration set
};
// Threshold whose cloud share on d is closest to `fraction` (in [0,1]). Thresholds sit halfway
// between distinct sorted scores (0 for all-local, 1 for all-cloud), so ties are never split.
Calibration calibrate_cloud_fraction(const std::vector<double>& scores, const Dataset& d,
                                     double fraction);
// The threshold with the smallest cloud share whose quality drop % is <= max_drop_pct.
Calibration calibrate_max_drop(const std::vector<double>& scores, const Dataset& d,
                               double max_drop_pct);

// The curve as CSV: cloud_share,router,random,oracle,all_local,all_cloud (header + 101 rows).
std::string curve_csv(const EvalReport& rep);
// The curve as a self-contained SVG (hand-written; no plotting dependency).
std::string curve_svg(const EvalReport& rep, const std::string& title);

}  // namespace tandem
