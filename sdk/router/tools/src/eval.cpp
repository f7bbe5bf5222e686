// Evaluation (quality-versus-cloud-share curves, APGR), calibration of the threshold, and the
// curve as CSV and SVG. Definitions: tandem/router_eval.h.
#include "tandem/router_eval.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

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

static std::string xml_escape(const std::string& s) {
    std::string o;
    for (char c : s) {
        if (c == '<') o += "&lt;";
        else if (c == '>') o += "&gt;";
        else if (c == '&') o += "&amp;";
        else if (c == '"') o += "&quot;";
        else o += c;
    }
    return o;
}

std::string curve_svg(const EvalReport& rep, const std::string& title) {
    const double W = 720, H = 460, L = 70, R = 190, T = 40, B = 55;  // canvas and margins (px)
    double lo = std::min(rep.q_local, rep.q_cloud), hi = std::max(rep.q_local, rep.q_cloud);
    for (const CurvePoint& p : rep.curve) {
        lo = std::min({lo, p.router, p.random, p.oracle});
        hi = std::max({hi, p.router, p.random, p.oracle});
    }
    double pad = (hi - lo) * 0.05 + 1e-9;
    lo -= pad, hi += pad;
    auto X = [&](double share) { return L + share * (W - L - R); };
    auto Y = [&](double q) { return T + (hi - q) / (hi - lo) * (H - T - B); };
    char buf[512];
    std::string s;
    std::snprintf(buf, sizeof buf,
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                  "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
                  W, H);
    s += buf;
    s += "<text x=\"" + std::to_string((int)(W / 2 - R / 2)) + "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" +
         xml_escape(title) + "</text>\n";
    // Axes, grid and tick labels.
    for (int i = 0; i <= 5; ++i) {
        double share = i / 5.0, q = lo + (hi - lo) * i / 5.0;
        std::snprintf(buf, sizeof buf,
                      "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                      "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.1f</text>\n"
                      "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                      "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.3f</text>\n",
                      X(share), T, X(share), H - B, X(share), H - B + 18, share, L, Y(q), W - R, Y(q), L - 6, Y(q) + 4, q);
        s += buf;
    }
    std::snprintf(buf, sizeof buf,
                  "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"black\"/>\n"
                  "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">share of queries sent to the cloud</text>\n"
                  "<text x=\"18\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 18 %.1f)\">mean quality</text>\n",
                  L, T, W - L - R, H - T - B, (L + W - R) / 2, H - 12, (T + H - B) / 2, (T + H - B) / 2);
    s += buf;
    struct Series {
        const char* name;
        const char* color;
        const char* dash;
        int which;  // 0 router, 1 random, 2 oracle, 3 all-local, 4 all-cloud
    };
    const Series series[] = {{"router", "#1f5fbf", "", 0},      {"random (10 seeds)", "#888888", "6,4", 1},
                             {"oracle", "#2a9d3a", "2,3", 2},  {"all-local", "#e07b00", "8,3", 3},
                             {"all-cloud", "#c0392b", "8,3", 4}};
    int row = 0;
    for (const Series& se : series) {
        std::string pts;
        for (const CurvePoint& p : rep.curve) {
            double q = se.which == 0 ? p.router : se.which == 1 ? p.random : se.which == 2 ? p.oracle
                     : se.which == 3 ? rep.q_local : rep.q_cloud;
            std::snprintf(buf, sizeof buf, "%.1f,%.1f ", X(p.cloud_share), Y(q));
            pts += buf;
        }
        std::snprintf(buf, sizeof buf,
                      "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" stroke-dasharray=\"%s\" points=\"",
                      se.color, se.dash);
        s += buf + pts + "\"/>\n";
        double ly = T + 10 + 20 * row++;
        std::snprintf(buf, sizeof buf,
                      "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\" "
                      "stroke-dasharray=\"%s\"/><text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                      W - R + 15, ly, W - R + 45, ly, se.color, se.dash, W - R + 52, ly + 4, se.name);
        s += buf;
    }
    std::snprintf(buf, sizeof buf,
                  "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"#1f5fbf\"/>"
                  "<text x=\"%.1f\" y=\"%.1f\">threshold %.3f</text>\n"
                  "<text x=\"%.1f\" y=\"%.1f\">APGR %.3f (random %.3f)</text>\n</svg>\n",
                  X(rep.cloud_fraction), Y(rep.quality), W - R + 15, T + 10 + 20 * row + 4, rep.threshold, W - R + 15,
                  T + 10 + 20 * (row + 1) + 4, rep.apgr, rep.apgr_random);
    s += buf;
    return s;
}

}  // namespace tandem
