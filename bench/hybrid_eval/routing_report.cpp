// The routing report: train det/prob/trans, pick L2 and thresholds on the calibration split,
// evaluate on the test split, bootstrap the comparisons, render markdown / JSON / SVG.
#include "routing_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <numeric>

#include "drafts.h"
#include "tandem/svg_plot.h"

namespace tandem::eval {

// ---- per-query routing arithmetic -------------------------------------------------------------

// Row indices by ascending score, ties by row order (router_eval.h's cloud order).
static std::vector<size_t> cloud_order(const std::vector<double>& scores) {
    std::vector<size_t> idx(scores.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
    return idx;
}

static void check_sizes(const std::vector<double>& scores, const std::vector<double>& q_small,
                        const std::vector<double>& q_large) {
    if (scores.empty() || scores.size() != q_small.size() || scores.size() != q_large.size())
        throw std::invalid_argument("scores and qualities must be non-empty and of one length");
}

size_t cloud_count(double share, size_t n) { return (size_t)std::llround(share * (double)n); }

std::vector<double> routed_qualities(const std::vector<double>& scores, const std::vector<double>& q_small,
                                     const std::vector<double>& q_large, size_t k_cloud) {
    check_sizes(scores, q_small, q_large);
    std::vector<double> q = q_small;
    const std::vector<size_t> order = cloud_order(scores);
    for (size_t k = 0; k < std::min(k_cloud, order.size()); k++) q[order[k]] = q_large[order[k]];
    return q;
}

double apgr_of_scores(const std::vector<double>& scores, const std::vector<double>& q_small,
                      const std::vector<double>& q_large) {
    check_sizes(scores, q_small, q_large);
    const size_t n = scores.size();
    const double q_local = std::accumulate(q_small.begin(), q_small.end(), 0.0) / (double)n;
    const double q_cloud = std::accumulate(q_large.begin(), q_large.end(), 0.0) / (double)n;
    if (q_cloud == q_local) return NAN;
    const std::vector<size_t> order = cloud_order(scores);
    std::vector<double> by_count(n + 1);  // mean quality when order[0..k) go to the cloud
    double sum = q_local * (double)n;
    by_count[0] = q_local;
    for (size_t k = 0; k < n; k++) {
        sum += q_large[order[k]] - q_small[order[k]];
        by_count[k + 1] = sum / (double)n;
    }
    constexpr int kGrid = 100;
    double area = 0;
    for (int g = 0; g < kGrid; g++) {
        const double a = by_count[cloud_count((double)g / kGrid, n)], b = by_count[cloud_count((double)(g + 1) / kGrid, n)];
        area += 0.5 * ((a - q_local) + (b - q_local)) / (q_cloud - q_local) / kGrid;
    }
    return area;
}

Interval bootstrap_apgr(const std::vector<double>& scores_a, const std::vector<double>& scores_b,
                        const std::vector<double>& q_small, const std::vector<double>& q_large, int resamples,
                        uint64_t seed) {
    check_sizes(scores_a, q_small, q_large);
    const bool paired = !scores_b.empty();
    if (paired) check_sizes(scores_b, q_small, q_large);
    if (resamples < 1) throw std::invalid_argument("resamples must be >= 1");
    auto stat = [&](const std::vector<double>& a, const std::vector<double>& b, const std::vector<double>& s,
                    const std::vector<double>& l) { return apgr_of_scores(a, s, l) - (paired ? apgr_of_scores(b, s, l) : 0.0); };
    Interval out{stat(scores_a, scores_b, q_small, q_large), NAN, NAN};
    const size_t n = scores_a.size();
    std::vector<double> a(n), b(paired ? n : 0), s(n), l(n), stats;
    uint64_t state = mix64(seed);
    for (int r = 0; r < resamples; r++) {
        for (size_t i = 0; i < n; i++) {
            state = mix64(state);
            const size_t j = (size_t)(state % n);
            a[i] = scores_a[j], s[i] = q_small[j], l[i] = q_large[j];
            if (paired) b[i] = scores_b[j];
        }
        const double v = stat(a, b, s, l);
        if (std::isfinite(v)) stats.push_back(v);
    }
    if (stats.empty()) return out;
    std::sort(stats.begin(), stats.end());
    const size_t R = stats.size();
    out.lo = stats[(size_t)std::floor(0.025 * (double)R)];
    out.hi = stats[std::min(R - 1, (size_t)std::max(1.0, std::ceil(0.975 * (double)R)) - 1)];
    return out;
}

double pearson(const std::vector<double>& a, const std::vector<double>& b) {
    if (a.size() != b.size() || a.size() < 2) throw std::invalid_argument("pearson needs two vectors of one length >= 2");
    const double ma = std::accumulate(a.begin(), a.end(), 0.0) / (double)a.size();
    const double mb = std::accumulate(b.begin(), b.end(), 0.0) / (double)b.size();
    double sab = 0, saa = 0, sbb = 0;
    for (size_t i = 0; i < a.size(); i++) sab += (a[i] - ma) * (b[i] - mb), saa += (a[i] - ma) * (a[i] - ma), sbb += (b[i] - mb) * (b[i] - mb);
    return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : NAN;
}

static double mean_range(const std::vector<double>& v, size_t b, size_t e) {
    return std::accumulate(v.begin() + (ptrdiff_t)b, v.begin() + (ptrdiff_t)e, 0.0) / (double)(e - b);
}

double gap_split_half_r(const std::vector<RoutingRecord>& records, Judge judge) {
    if (judge == Judge::likelihood || records.size() < 2) return NAN;
    std::vector<double> g1, g2;
    for (const RoutingRecord& r : records) {
        const std::vector<double>& s = judge == Judge::chrf ? r.small_chrf : r.small_rouge;
        const std::vector<double>& l = judge == Judge::chrf ? r.large_chrf : r.large_rouge;
        if (s.size() < 2 || l.size() < 2) return NAN;
        const size_t hs = s.size() / 2, hl = l.size() / 2;
        g1.push_back(mean_range(l, 0, hl) - mean_range(s, 0, hs));
        g2.push_back(mean_range(l, hl, l.size()) - mean_range(s, hs, s.size()));
    }
    return pearson(g1, g2);
}

// ---- the report ----------------------------------------------------------------------------------

static std::vector<double> mean_scores(const Dataset& d, bool small) {
    std::vector<double> q;
    for (const TrainingRow& r : d.rows) q.push_back(mean_quality(small ? r.small_scores : r.large_scores));
    return q;
}

static double mean_of(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / (double)v.size(); }

// Drop % vs all-cloud of a (router - all-cloud) quality difference interval.
static Interval as_drop(const Interval& diff, double q_cloud) {
    const double s = -100.0 / std::fabs(q_cloud);
    return {diff.mean * s, diff.hi * s, diff.lo * s};
}

static double drop_pct(double q_cloud, double q) { return 100.0 * (q_cloud - q) / std::fabs(q_cloud); }

JudgeReport make_judge_report(const std::vector<RoutingRecord>& train, const std::vector<RoutingRecord>& calib,
                              const std::vector<RoutingRecord>& test, Judge judge, const ReportOptions& opt) {
    const Dataset dtrain = to_dataset(train, judge, "train"), dcal = to_dataset(calib, judge, "calib"),
                  dtest = to_dataset(test, judge, "test");
    if (opt.l2_grid.empty()) throw std::invalid_argument("the L2 grid is empty");
    JudgeReport rep;
    rep.judge = judge;
    rep.n_train = dtrain.rows.size(), rep.n_calib = dcal.rows.size(), rep.n_test = dtest.rows.size();
    const std::vector<double> qs = mean_scores(dtest, true), ql = mean_scores(dtest, false);
    const std::vector<double> cqs = mean_scores(dcal, true), cql = mean_scores(dcal, false);
    rep.q_local = mean_of(qs), rep.q_cloud = mean_of(ql);
    for (size_t i = 0; i < qs.size(); i++) rep.small_wins += qs[i] >= ql[i];
    rep.small_wins /= (double)qs.size();
    const size_t n = qs.size();
    std::vector<RoutingRecord> all = train;
    all.insert(all.end(), calib.begin(), calib.end());
    all.insert(all.end(), test.begin(), test.end());
    rep.split_half_r = gap_split_half_r(all, judge);
    {
        std::vector<double> gap, lp, ent;
        for (const TrainingRow& r : dtrain.rows) {
            gap.push_back(mean_quality(r.large_scores) - mean_quality(r.small_scores));
            lp.push_back(*r.signals.query_logprob_mean);
            ent.push_back(*r.signals.gen_entropy);
        }
        if (gap.size() >= 2) rep.r_logprob = pearson(lp, gap), rep.r_entropy = pearson(ent, gap);
    }

    for (LabelMode mode : {LabelMode::det, LabelMode::prob, LabelMode::trans}) {
        RouterResult res;
        res.labels = mode;
        double t = 0;
        const std::vector<double> labels = make_labels(dtrain.rows, mode, &t);
        rep.label_mean[(int)mode] = mean_of(labels);
        std::unique_ptr<LogisticRouter> best;
        for (double l2 : opt.l2_grid) {
            TrainOptions to;
            to.labels = mode;
            to.hash_bits = opt.hash_bits;
            to.l2 = l2;
            std::unique_ptr<LogisticRouter> r = train_logistic_router(dtrain, to);
            const double a = apgr_of_scores(router_scores(*r, dcal), cqs, cql);
            if (!best || a > res.calib_apgr) best = std::move(r), res.calib_apgr = a, res.l2 = l2;
        }
        res.t = best->training().t;
        const std::vector<double> cal_scores = router_scores(*best, dcal);
        res.test_scores = router_scores(*best, dtest);
        for (int i = 0; i < 3; i++) {
            CalibratedPoint& c = res.calibrated[i];
            c.target_local = kLocalShares[i];
            c.threshold = calibrate_cloud_fraction(cal_scores, dcal, 1.0 - kLocalShares[i]).threshold;
            double cloud = 0;
            const double q = quality_at_threshold(res.test_scores, dtest, c.threshold, &cloud);
            c.test_local = 1.0 - cloud;
            c.test_drop_pct = drop_pct(rep.q_cloud, q);
        }
        best->set_threshold(res.calibrated[2].threshold);  // the router file keeps the 40%-local knob
        res.test = evaluate_router(*best, dtest);
        res.apgr_ci = bootstrap_apgr(res.test_scores, {}, qs, ql, opt.resamples, opt.seed);
        for (int i = 0; i < 3; i++) {
            const std::vector<double> routed = routed_qualities(res.test_scores, qs, ql, cloud_count(1.0 - kLocalShares[i], n));
            res.drop_ci[i] = as_drop(paired_bootstrap(routed, ql, opt.resamples, opt.seed), rep.q_cloud);
        }
        res.router = std::move(best);
        rep.routers.push_back(std::move(res));
    }

    const EvalReport& any = rep.routers.front().test;
    rep.apgr_random = any.apgr_random, rep.apgr_oracle = any.apgr_oracle;
    for (int i = 0; i < 3; i++) {
        rep.random_drop[i] = any.random_drop_at_local[i];
        const size_t g = (size_t)std::llround((1.0 - kLocalShares[i]) * 100);
        rep.oracle_drop[i] = drop_pct(rep.q_cloud, any.curve.at(g).oracle);
    }

    // Comparisons: APGR between label modes; quality at 20% and 40% local between label modes
    // and against random routing (its expected per-query quality x q_small + (1-x) q_large).
    // Is the cloud model better at all on these queries?
    rep.comparisons.push_back({"all-cloud - all-local: quality (per query, q_large - q_small)",
                               paired_bootstrap(ql, qs, opt.resamples, opt.seed)});
    const char* names[3] = {"det", "prob", "trans"};
    const int pairs[3][2] = {{2, 0}, {1, 0}, {2, 1}};
    uint64_t seed = opt.seed;
    for (const auto& p : pairs) {
        const RouterResult &a = rep.routers[p[0]], &b = rep.routers[p[1]];
        rep.comparisons.push_back({std::string(names[p[0]]) + " - " + names[p[1]] + ": APGR",
                                   bootstrap_apgr(a.test_scores, b.test_scores, qs, ql, opt.resamples, ++seed)});
    }
    for (int i : {1, 2}) {
        const double x = kLocalShares[i];
        const size_t k = cloud_count(1.0 - x, n);
        char share[32];
        std::snprintf(share, sizeof share, "quality at %.0f%% local", 100 * x);
        for (const auto& p : pairs) {
            rep.comparisons.push_back(
                {std::string(names[p[0]]) + " - " + names[p[1]] + ": " + share,
                 paired_bootstrap(routed_qualities(rep.routers[p[0]].test_scores, qs, ql, k),
                                  routed_qualities(rep.routers[p[1]].test_scores, qs, ql, k), opt.resamples, ++seed)});
        }
        std::vector<double> random_q(n);
        for (size_t j = 0; j < n; j++) random_q[j] = x * qs[j] + (1.0 - x) * ql[j];
        for (int m = 0; m < 3; m++)
            rep.comparisons.push_back({std::string(names[m]) + " - random: " + share,
                                       paired_bootstrap(routed_qualities(rep.routers[m].test_scores, qs, ql, k), random_q,
                                                        opt.resamples, ++seed)});
    }
    return rep;
}

// ---- rendering -----------------------------------------------------------------------------------

static std::string fmt(const char* f, double v) {
    char b[64];
    std::snprintf(b, sizeof b, f, v);
    return b;
}

static std::string ci(const Interval& v, const char* f) { return fmt(f, v.mean) + " [" + fmt(f, v.lo) + ", " + fmt(f, v.hi) + "]"; }

static const char* judge_title(Judge j) {
    switch (j) {
        case Judge::chrf: return "chrF of each sampled continuation vs the true next sentence (0-100)";
        case Judge::rouge_l: return "ROUGE-L F1 of each sampled continuation vs the true next sentence (0-1)";
        case Judge::likelihood: return "each model's mean token log-likelihood of the true next sentence (cheap judge, no sampling)";
    }
    return "?";
}

std::string report_markdown(const std::vector<JudgeReport>& reports) {
    std::string s;
    for (const JudgeReport& r : reports) {
        s += std::string("### Judge `") + judge_name(r.judge) + "`: " + judge_title(r.judge) + "\n\n";
        s += "Train " + std::to_string(r.n_train) + " queries (2019-2020), calibration " + std::to_string(r.n_calib) +
             " (2021), test " + std::to_string(r.n_test) + " (2022). On the test split: all-local quality " +
             fmt("%.4f", r.q_local) + ", all-cloud " + fmt("%.4f", r.q_cloud) + " (gap " +
             fmt("%.2f", drop_pct(r.q_cloud, r.q_local)) + "% of all-cloud); the small model is at least as good on " +
             fmt("%.1f", 100 * r.small_wins) + "% of the queries. Mean training label: det " + fmt("%.3f", r.label_mean[0]) +
             ", prob " + fmt("%.3f", r.label_mean[1]) + ", trans " + fmt("%.3f", r.label_mean[2]) + ".\n\n";
        s += "Is the per-query gap (large - small) predictable at all? Split-half reliability of the gap (Pearson r "
             "between the gap on the first and on the second half of the samples, all " +
             std::to_string(r.n_train + r.n_calib + r.n_test) + " queries): " +
             (std::isnan(r.split_half_r) ? std::string("n/a (one score per model)") : fmt("%.3f", r.split_half_r)) +
             ". Pearson r of the gap with the router's signals on train: query_logprob_mean " + fmt("%.3f", r.r_logprob) +
             ", gen_entropy " + fmt("%.3f", r.r_entropy) + ".\n\n";
        s += "Quality drop (%) vs all-cloud at a cost advantage (share of queries kept local) of 10/20/40%, "
             "on the 2022 curve; [95% paired bootstrap interval]; lower is better, negative = better than all-cloud.\n\n";
        s += "| router | L2 | t | 10% | 20% | 40% | APGR |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n";
        for (const RouterResult& x : r.routers) {
            s += std::string("| r_") + label_mode_name(x.labels) + " | " + fmt("%g", x.l2) + " | " + fmt("%.3g", x.t);
            for (int i = 0; i < 3; i++) s += " | " + ci(x.drop_ci[i], "%.2f");
            s += " | " + ci(x.apgr_ci, "%.3f") + " |\n";
        }
        s += "| random (10 seeds) |  |  | " + fmt("%.2f", r.random_drop[0]) + " | " + fmt("%.2f", r.random_drop[1]) + " | " +
             fmt("%.2f", r.random_drop[2]) + " | " + fmt("%.3f", r.apgr_random) + " |\n";
        s += "| oracle |  |  | " + fmt("%.2f", r.oracle_drop[0]) + " | " + fmt("%.2f", r.oracle_drop[1]) + " | " +
             fmt("%.2f", r.oracle_drop[2]) + " | " + fmt("%.3f", r.apgr_oracle) + " |\n\n";
        s += "Thresholds calibrated on 2021 for a local share of 10/20/40%, applied to 2022 "
             "(realised local share, quality drop % vs all-cloud):\n\n";
        s += "| router | 10% local | 20% local | 40% local |\n| --- | ---: | ---: | ---: |\n";
        for (const RouterResult& x : r.routers) {
            s += std::string("| r_") + label_mode_name(x.labels);
            for (const CalibratedPoint& c : x.calibrated)
                s += " | " + fmt("%.1f%%", 100 * c.test_local) + ", drop " + fmt("%.2f", c.test_drop_pct);
            s += " |\n";
        }
        s += "\nComparisons on 2022 (mean difference [95% paired bootstrap interval]; quality in the judge's units):\n\n";
        s += "| comparison | difference |\n| --- | ---: |\n";
        for (const Comparison& c : r.comparisons) s += "| " + c.what + " | " + ci(c.diff, "%.4f") + " |\n";
        s += "\n";
    }
    return s;
}

std::string report_json(const std::vector<JudgeReport>& reports) {
    nlohmann::json out = nlohmann::json::array();
    auto iv = [](const Interval& v) { return nlohmann::json{{"mean", v.mean}, {"lo", v.lo}, {"hi", v.hi}}; };
    for (const JudgeReport& r : reports) {
        nlohmann::json j = {{"judge", judge_name(r.judge)}, {"n_train", r.n_train}, {"n_calib", r.n_calib},
                            {"n_test", r.n_test}, {"q_local", r.q_local}, {"q_cloud", r.q_cloud},
                            {"small_wins", r.small_wins}, {"apgr_random", r.apgr_random}, {"apgr_oracle", r.apgr_oracle},
                            {"random_drop", r.random_drop}, {"oracle_drop", r.oracle_drop},
                            {"label_mean", r.label_mean}, {"split_half_r", r.split_half_r},
                            {"r_logprob_gap", r.r_logprob}, {"r_entropy_gap", r.r_entropy}};
        for (const RouterResult& x : r.routers) {
            nlohmann::json rj = {{"labels", label_mode_name(x.labels)}, {"l2", x.l2}, {"t", x.t},
                                 {"calib_apgr", x.calib_apgr}, {"apgr", iv(x.apgr_ci)},
                                 {"drop_at_local", {iv(x.drop_ci[0]), iv(x.drop_ci[1]), iv(x.drop_ci[2])}}};
            for (const CalibratedPoint& c : x.calibrated)
                rj["calibrated"].push_back({{"target_local", c.target_local}, {"threshold", c.threshold},
                                            {"test_local", c.test_local}, {"test_drop_pct", c.test_drop_pct}});
            j["routers"].push_back(rj);
        }
        for (const Comparison& c : r.comparisons) j["comparisons"].push_back({{"what", c.what}, {"diff", iv(c.diff)}});
        out.push_back(j);
    }
    return out.dump(1);
}

std::string combined_curve_svg(const JudgeReport& rep, const std::string& title) {
    CurvePlot p;
    p.width = 760, p.height = 470, p.left = 75, p.right = 200;  // room for the routers' APGR in the legend
    p.title = title;
    p.x_label = "share of queries sent to the cloud model";
    p.y_label = std::string("mean quality (") + judge_name(rep.judge) + ")";
    const std::vector<CurvePoint>& base = rep.routers.front().test.curve;
    for (const CurvePoint& c : base) p.x.push_back(c.cloud_share);
    const char* colors[3] = {"#8e44ad", "#1f8fbf", "#1f3fbf"};
    for (size_t m = 0; m < rep.routers.size(); m++) {
        PlotSeries se{std::string("r_") + label_mode_name(rep.routers[m].labels) + fmt(" (APGR %.3f)", rep.routers[m].test.apgr),
                      colors[m % 3], m == 0 ? "4,2" : m == 1 ? "9,3" : "", {}};
        for (const CurvePoint& c : rep.routers[m].test.curve) se.y.push_back(c.router);
        p.series.push_back(se);
    }
    PlotSeries rnd{fmt("random (%.3f)", rep.apgr_random), "#888888", "6,4", {}}, orc{fmt("oracle (%.3f)", rep.apgr_oracle), "#2a9d3a", "2,3", {}};
    for (const CurvePoint& c : base) rnd.y.push_back(c.random), orc.y.push_back(c.oracle);
    p.series.push_back(rnd), p.series.push_back(orc);
    p.series.push_back({"all-local", "#e07b00", "8,3", std::vector<double>(base.size(), rep.q_local)});
    p.series.push_back({"all-cloud", "#c0392b", "8,3", std::vector<double>(base.size(), rep.q_cloud)});
    return svg_curve_plot(p);
}

}  // namespace tandem::eval
