// Evaluation (quality-versus-cloud-share curves, APGR), calibration of the threshold, and the
// curve as CSV and SVG. Definitions: tandem/router_eval.h.
#include "tandem/router_eval.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "tandem/svg_plot.h"

namespace tandem {

constexpr int kGrid = 100;        // curve points at cloud share g / kGrid
constexpr int kRandomSeeds = 10;  // seeds 0..9

std::vector<double> router_scores(const Router& r, const Dataset& d) {
    std::vector<double> s;
    s.reserve(d.rows.size());
    for (const TrainingRow& row : d.rows) {
        try {
            s.push_back(r.score(row.query, row.signals));
        } catch (const RouterError& e) {
            throw RouterError(d.file + ":" + std::to_string(row.line) + ": " + e.what());
        }
    }
    return s;
}

// Row indices by ascending score, ties by row order: the cloud takes them from the front.
static std::vector<size_t> cloud_order(const std::vector<double>& scores) {
    std::vector<size_t> idx(scores.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
    return idx;
}

struct Qualities {
    std::vector<double> small, large;  // (N) mean quality per row
    double sum_small = 0, sum_large = 0;
};

static Qualities qualities(const Dataset& d) {
    if (d.rows.empty()) throw RouterError(d.file + ": no rows to evaluate on");
    Qualities q;
    for (const TrainingRow& r : d.rows) {
        q.small.push_back(mean_quality(r.small_scores));
        q.large.push_back(mean_quality(r.large_scores));
        q.sum_small += q.small.back();
        q.sum_large += q.large.back();
    }
    return q;
}

// quality[k] for k = 0..N when order[0..k) goes to the cloud.
static std::vector<double> quality_by_count(const Qualities& q, const std::vector<size_t>& order) {
    const size_t n = order.size();
    std::vector<double> out(n + 1);
    double sum = q.sum_small;
    out[0] = sum / (double)n;
    for (size_t k = 0; k < n; ++k) {
        sum += q.large[order[k]] - q.small[order[k]];
        out[k + 1] = sum / (double)n;
    }
    return out;
}

static size_t count_at_share(double share, size_t n) { return (size_t)std::llround(share * (double)n); }

double quality_at_cloud_count(const std::vector<double>& scores, const Dataset& d, size_t k) {
    Qualities q = qualities(d);
    if (scores.size() != d.rows.size()) throw RouterError("score count != row count");
    return quality_by_count(q, cloud_order(scores)).at(std::min(k, scores.size()));
}

double quality_at_threshold(const std::vector<double>& scores, const Dataset& d, double threshold,
                            double* cloud_fraction) {
    Qualities q = qualities(d);
    if (scores.size() != d.rows.size()) throw RouterError("score count != row count");
    double sum = 0;
    size_t cloud = 0;
    for (size_t i = 0; i < scores.size(); ++i) {
        bool to_cloud = scores[i] < threshold;
        cloud += to_cloud;
        sum += to_cloud ? q.large[i] : q.small[i];
    }
    if (cloud_fraction) *cloud_fraction = (double)cloud / (double)scores.size();
    return sum / (double)scores.size();
}

static double drop_pct(double q_cloud, double q) {
    return q_cloud == 0 ? NAN : 100.0 * (q_cloud - q) / std::fabs(q_cloud);
}

// Trapezoid integral of PGR over the grid; NaN when the two models are equally good.
static double apgr_of(const std::vector<double>& curve, double q_local, double q_cloud) {
    if (q_cloud == q_local) return NAN;
    double area = 0;
    for (int g = 0; g < kGrid; ++g) {
        double a = (curve[g] - q_local) / (q_cloud - q_local), b = (curve[g + 1] - q_local) / (q_cloud - q_local);
        area += 0.5 * (a + b) / kGrid;
    }
    return area;
}

EvalReport evaluate_router(const Router& r, const Dataset& d) {
    Qualities q = qualities(d);
    const size_t n = d.rows.size();
    std::vector<double> scores = router_scores(r, d);
    std::vector<double> by_router = quality_by_count(q, cloud_order(scores));

    std::vector<double> gain_neg(n);  // oracle: largest gain first = ascending -gain
    for (size_t i = 0; i < n; ++i) gain_neg[i] = q.small[i] - q.large[i];
    std::vector<double> by_oracle = quality_by_count(q, cloud_order(gain_neg));

    std::vector<double> by_random(n + 1, 0.0);
    for (int seed = 0; seed < kRandomSeeds; ++seed) {
        RandomRouter rr((uint64_t)seed);
        std::vector<double> c = quality_by_count(q, cloud_order(router_scores(rr, d)));
        for (size_t k = 0; k <= n; ++k) by_random[k] += c[k] / kRandomSeeds;
    }

    EvalReport rep;
    rep.n = n;
    rep.q_local = q.sum_small / (double)n;
    rep.q_cloud = q.sum_large / (double)n;
    std::vector<double> cr, cn, co;
    for (int g = 0; g <= kGrid; ++g) {
        double share = (double)g / kGrid;
        size_t k = count_at_share(share, n);
        rep.curve.push_back({share, by_router[k], by_random[k], by_oracle[k]});
        cr.push_back(by_router[k]), cn.push_back(by_random[k]), co.push_back(by_oracle[k]);
    }
    rep.apgr = apgr_of(cr, rep.q_local, rep.q_cloud);
    rep.apgr_random = apgr_of(cn, rep.q_local, rep.q_cloud);
    rep.apgr_oracle = apgr_of(co, rep.q_local, rep.q_cloud);
    rep.threshold = r.threshold();
    rep.quality = quality_at_threshold(scores, d, rep.threshold, &rep.cloud_fraction);
    rep.quality_drop_pct = drop_pct(rep.q_cloud, rep.quality);
    for (int i = 0; i < 3; ++i) {
        size_t k = count_at_share(1.0 - kLocalShares[i], n);
        rep.drop_at_local[i] = drop_pct(rep.q_cloud, by_router[k]);
        rep.random_drop_at_local[i] = drop_pct(rep.q_cloud, by_random[k]);
    }
    return rep;
}

// ---- calibration --------------------------------------------------------------------------

struct Candidate {
    size_t k;
    double threshold;
};

// Thresholds that split the sorted scores between distinct values (plus all-local and
// all-cloud), ascending in k.
static std::vector<Candidate> candidates(const std::vector<double>& scores) {
    std::vector<double> s = scores;
    std::sort(s.begin(), s.end());
    std::vector<Candidate> c = {{0, 0.0}};
    for (size_t k = 1; k < s.size(); ++k) {
        if (!(s[k - 1] < s[k])) continue;
        double mid = s[k - 1] + (s[k] - s[k - 1]) / 2;
        if (mid <= s[k - 1]) mid = s[k];
        c.push_back({k, mid});
    }
    c.push_back({s.size(), 1.0});
    return c;
}

static Calibration make_calibration(const std::vector<double>& scores, const Dataset& d, double threshold) {
    Calibration c;
    c.threshold = threshold;
    double q = quality_at_threshold(scores, d, threshold, &c.cloud_fraction);
    c.quality_drop_pct = drop_pct(qualities(d).sum_large / (double)d.rows.size(), q);
    return c;
}

Calibration calibrate_cloud_fraction(const std::vector<double>& scores, const Dataset& d, double fraction) {
    if (!(fraction >= 0 && fraction <= 1)) throw RouterError("cloud fraction must be in [0, 1]");
    if (scores.empty() || scores.size() != d.rows.size()) throw RouterError(d.file + ": no rows to calibrate on");
    const double n = (double)scores.size();
    Candidate best = {0, 0.0};
    double best_err = 2;
    for (const Candidate& c : candidates(scores)) {
        double err = std::fabs((double)c.k / n - fraction);
        if (err < best_err - 1e-15) best_err = err, best = c;
    }
    return make_calibration(scores, d, best.threshold);
}

Calibration calibrate_max_drop(const std::vector<double>& scores, const Dataset& d, double max_drop_pct) {
    if (!(max_drop_pct >= 0)) throw RouterError("max drop must be a percentage >= 0");
    if (scores.empty() || scores.size() != d.rows.size()) throw RouterError(d.file + ": no rows to calibrate on");
    Qualities q = qualities(d);
    std::vector<double> by_count = quality_by_count(q, cloud_order(scores));
    double q_cloud = q.sum_large / (double)scores.size();
    for (const Candidate& c : candidates(scores)) {
        double drop = drop_pct(q_cloud, by_count[c.k]);
        if (std::isnan(drop) || drop <= max_drop_pct + 1e-12) return make_calibration(scores, d, c.threshold);
    }
    return make_calibration(scores, d, 1.0);
}

// ---- CSV and SVG --------------------------------------------------------------------------

std::string curve_csv(const EvalReport& rep) {
    std::string out = "cloud_share,router,random,oracle,all_local,all_cloud\n";
    char buf[256];
    for (const CurvePoint& p : rep.curve) {
        std::snprintf(buf, sizeof buf, "%.2f,%.6f,%.6f,%.6f,%.6f,%.6f\n", p.cloud_share, p.router, p.random, p.oracle,
                      rep.q_local, rep.q_cloud);
        out += buf;
    }
    return out;
}

std::string curve_svg(const EvalReport& rep, const std::string& title) {
    CurvePlot p;
    p.title = title;
    p.x_label = "share of queries sent to the cloud";
    p.y_label = "mean quality";
    PlotSeries router{"router", "#1f5fbf", "", {}}, random{"random (10 seeds)", "#888888", "6,4", {}},
        oracle{"oracle", "#2a9d3a", "2,3", {}};
    for (const CurvePoint& c : rep.curve) {
        p.x.push_back(c.cloud_share);
        router.y.push_back(c.router);
        random.y.push_back(c.random);
        oracle.y.push_back(c.oracle);
    }
    p.series = {router, random, oracle, {"all-local", "#e07b00", "8,3", std::vector<double>(p.x.size(), rep.q_local)},
                {"all-cloud", "#c0392b", "8,3", std::vector<double>(p.x.size(), rep.q_cloud)}};
    p.marker = true;  // the router at its threshold
    p.marker_x = rep.cloud_fraction;
    p.marker_y = rep.quality;
    char buf[96];
    std::snprintf(buf, sizeof buf, "threshold %.3f", rep.threshold);
    p.notes.push_back(buf);
    std::snprintf(buf, sizeof buf, "APGR %.3f (random %.3f)", rep.apgr, rep.apgr_random);
    p.notes.push_back(buf);
    return svg_curve_plot(p);
}

}  // namespace tandem
