// Training data (JSONL), the Hybrid LLM labels (det, prob, trans) and the L-BFGS trainer of
// the logistic router. Formats and definitions: tandem/router_train.h.
#include "tandem/router_train.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tandem/router_math.h"
#include "train_common.h"

namespace tandem {

using json = nlohmann::json;

// ---- JSONL --------------------------------------------------------------------------------

[[noreturn]] static void row_error(const std::string& file, int line, const std::string& field,
                                   const std::string& why) {
    throw RouterError(file + ":" + std::to_string(line) + ": field '" + field + "': " + why);
}

static std::vector<double> score_array(const json& row, const char* key, const std::string& file, int line) {
    auto it = row.find(key);
    if (it == row.end()) row_error(file, line, key, "missing");
    if (!it->is_array() || it->empty()) row_error(file, line, key, "expected a non-empty array of numbers");
    std::vector<double> v;
    v.reserve(it->size());
    for (const json& x : *it) {
        if (!x.is_number()) row_error(file, line, key, "expected a non-empty array of numbers, found " + x.dump());
        double d = x.get<double>();
        if (!std::isfinite(d)) row_error(file, line, key, "scores must be finite");
        v.push_back(d);
    }
    return v;
}

Dataset parse_routing_jsonl(std::string_view text, const std::string& name) {
    Dataset d;
    d.file = name;
    int first_line = 0;
    bool first_has[kSignalCount] = {false, false, false};
    size_t pos = 0;
    for (int line = 1; pos <= text.size(); ++line) {
        size_t end = text.find('\n', pos);
        if (end == std::string_view::npos) end = text.size();
        std::string_view l = text.substr(pos, end - pos);
        pos = end + 1;
        if (l.find_first_not_of(" \t\r") == std::string_view::npos) {
            if (end == text.size()) break;
            continue;
        }
        json row;
        try {
            row = json::parse(l);
        } catch (const json::exception& e) {
            throw RouterError(name + ":" + std::to_string(line) + ": invalid JSON: " + e.what());
        }
        if (!row.is_object()) throw RouterError(name + ":" + std::to_string(line) + ": expected a JSON object");
        TrainingRow r;
        r.line = line;
        auto q = row.find("query");
        if (q == row.end()) row_error(name, line, "query", "missing");
        if (!q->is_string()) row_error(name, line, "query", "expected a string");
        r.query = q->get<std::string>();
        r.small_scores = score_array(row, "small_scores", name, line);
        r.large_scores = score_array(row, "large_scores", name, line);
        for (int k = 0; k < kSignalCount; ++k) {
            const char* key = kSignalNames[k];
            auto it = row.find(key);
            bool has = it != row.end();
            if (has) {
                if (!it->is_number() || !std::isfinite(it->get<double>()))
                    row_error(name, line, key, "expected a finite number");
                double v = it->get<double>();
                if (k == 0) r.signals.query_logprob_mean = v;
                if (k == 1) r.signals.gen_entropy = v;
                if (k == 2) r.signals.memory_coverage = v;
            }
            if (d.rows.empty()) {
                first_has[k] = has;
            } else if (has != first_has[k]) {
                row_error(name, line, key,
                          std::string(has ? "present, but the first row (line " : "missing, but the first row (line ") +
                              std::to_string(first_line) + (has ? ") lacks it" : ") has it") +
                              "; a signal must be in every row or in none");
            }
        }
        if (d.rows.empty()) first_line = line;
        d.rows.push_back(std::move(r));
        if (end == text.size()) break;
    }
    if (d.rows.empty()) throw RouterError(name + ": no rows (expected JSONL objects with query, small_scores, large_scores)");
    for (int k = 0; k < kSignalCount; ++k)
        if (first_has[k]) d.signals.push_back((Signal)k);
    return d;
}

Dataset load_routing_jsonl(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw RouterError(path + ": cannot open data file");
    std::stringstream ss;
    ss << f.rdbuf();
    return parse_routing_jsonl(ss.str(), path);
}

std::string dataset_to_jsonl(const Dataset& d) {
    std::string out;
    for (const TrainingRow& r : d.rows) {
        json j = {{"query", r.query}, {"small_scores", r.small_scores}, {"large_scores", r.large_scores}};
        for (int k = 0; k < kSignalCount; ++k)
            if (auto v = signal_value(r.signals, (Signal)k)) j[kSignalNames[k]] = *v;
        out += j.dump() + "\n";
    }
    return out;
}

double mean_quality(const std::vector<double>& scores) {
    double s = 0;
    for (double x : scores) s += x;
    return scores.empty() ? 0.0 : s / (double)scores.size();
}

// ---- labels -------------------------------------------------------------------------------

double label_det(const TrainingRow& r) { return r.small_scores.at(0) >= r.large_scores.at(0) ? 1.0 : 0.0; }

double label_trans(const TrainingRow& r, double t) {
    size_t wins = 0;
    for (double s : r.small_scores)
        for (double l : r.large_scores) wins += s >= l - t;
    return (double)wins / (double)(r.small_scores.size() * r.large_scores.size());
}

double label_prob(const TrainingRow& r) {
    size_t wins = 0;
    for (double s : r.small_scores)
        for (double l : r.large_scores) wins += s >= l;
    return (double)wins / (double)(r.small_scores.size() * r.large_scores.size());
}

double mean_pairwise_difference(std::vector<double> y) {
    const size_t n = y.size();
    if (n == 0) return 0.0;
    std::sort(y.begin(), y.end());
    // sum_{a<b} (y_b - y_a) = sum_k y_(k) (2k - (n - 1)); the ordered-pair sum is twice that.
    double s = 0;
    for (size_t k = 0; k < n; ++k) s += y[k] * (2.0 * (double)k - (double)(n - 1));
    return 2.0 * s / ((double)n * (double)n);
}

double choose_trans_t(const std::vector<TrainingRow>& rows, int grid_steps) {
    if (grid_steps < 1) throw RouterError("trans grid needs at least one step");
    double range = 0;
    for (const TrainingRow& r : rows) {
        double lmax = *std::max_element(r.large_scores.begin(), r.large_scores.end());
        double smin = *std::min_element(r.small_scores.begin(), r.small_scores.end());
        range = std::max(range, lmax - smin);
    }
    double best_t = 0, best_d = -1;
    std::vector<double> y(rows.size());
    for (int g = 0; g <= grid_steps; ++g) {
        double t = (range * g) / grid_steps;
        for (size_t i = 0; i < rows.size(); ++i) y[i] = label_trans(rows[i], t);
        double d = mean_pairwise_difference(y);
        if (d > best_d + 1e-12) {
            best_d = d;
            best_t = t;
        }
        if (range == 0) break;
    }
    return best_t;
}

std::vector<double> make_labels(const std::vector<TrainingRow>& rows, LabelMode mode, double* t_out) {
    double t = mode == LabelMode::trans ? choose_trans_t(rows) : 0.0;
    if (t_out) *t_out = t;
    std::vector<double> y;
    y.reserve(rows.size());
    for (const TrainingRow& r : rows)
        y.push_back(mode == LabelMode::det ? label_det(r) : mode == LabelMode::prob ? label_prob(r) : label_trans(r, t));
    return y;
}

// ---- L-BFGS trainer -----------------------------------------------------------------------

namespace {

// The training problem: theta = [bucket weights (B), dense weights (D), bias].
struct Problem {
    size_t B = 0, D = 0;
    std::vector<std::vector<uint32_t>> buckets;  // (N) active buckets per row
    std::vector<double> z;                       // (N, D) standardised dense features
    std::vector<double> y;                       // (N) labels
    double l2 = 0;

    size_t dim() const { return B + D + 1; }

    // Mean soft-label cross-entropy + l2/2 |w|^2 (bias excluded); fills grad (dim).
    double eval(const std::vector<double>& th, std::vector<double>& grad) const {
        const size_t N = y.size();
        std::fill(grad.begin(), grad.end(), 0.0);
        double loss = 0;
        for (size_t i = 0; i < N; ++i) {
            double a = th[B + D];
            for (uint32_t b : buckets[i]) a += th[b];
            for (size_t k = 0; k < D; ++k) a += th[B + k] * z[i * D + k];
            double softplus = a > 0 ? a + std::log1p(std::exp(-a)) : std::log1p(std::exp(a));
            loss += softplus - y[i] * a;
            double r = (sigmoid(a) - y[i]) / (double)N;
            for (uint32_t b : buckets[i]) grad[b] += r;
            for (size_t k = 0; k < D; ++k) grad[B + k] += r * z[i * D + k];
            grad[B + D] += r;
        }
        loss /= (double)N;
        for (size_t j = 0; j < B + D; ++j) {
            loss += 0.5 * l2 * th[j] * th[j];
            grad[j] += l2 * th[j];
        }
        return loss;
    }
};

double dot(const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
}

double max_abs(const std::vector<double>& a) {
    double m = 0;
    for (double x : a) m = std::max(m, std::fabs(x));
    return m;
}

// Minimises p from zero. Memory m = 10; Armijo backtracking (c1 = 1e-4, halving).
std::vector<double> lbfgs(const Problem& p, int max_iters, double grad_tol) {
    const size_t n = p.dim();
    const int m = 10;
    std::vector<double> x(n, 0.0), g(n), xn(n), gn(n), dir(n);
    std::vector<std::vector<double>> S, Y;
    std::vector<double> rho;
    double f = p.eval(x, g);
    for (int it = 0; it < max_iters && max_abs(g) > grad_tol; ++it) {
        // Two-loop recursion: dir = -H g.
        dir = g;
        std::vector<double> alpha(S.size());
        for (int k = (int)S.size() - 1; k >= 0; --k) {
            alpha[k] = rho[k] * dot(S[k], dir);
            for (size_t i = 0; i < n; ++i) dir[i] -= alpha[k] * Y[k][i];
        }
        double gamma = S.empty() ? 1.0 / std::max(1.0, std::sqrt(dot(g, g))) : dot(S.back(), Y.back()) / dot(Y.back(), Y.back());
        for (double& d : dir) d *= gamma;
        for (size_t k = 0; k < S.size(); ++k) {
            double beta = rho[k] * dot(Y[k], dir);
            for (size_t i = 0; i < n; ++i) dir[i] += S[k][i] * (alpha[k] - beta);
        }
        for (double& d : dir) d = -d;
        double slope = dot(g, dir);
        if (slope >= 0) {  // not a descent direction: restart from steepest descent
            S.clear(), Y.clear(), rho.clear();
            for (size_t i = 0; i < n; ++i) dir[i] = -g[i];
            slope = dot(g, dir);
        }
        double step = 1.0, fn = 0;
        bool ok = false;
        for (int ls = 0; ls < 50; ++ls) {
            for (size_t i = 0; i < n; ++i) xn[i] = x[i] + step * dir[i];
            fn = p.eval(xn, gn);
            if (fn <= f + 1e-4 * step * slope) {
                ok = true;
                break;
            }
            step *= 0.5;
        }
        if (!ok) break;  // no progress possible at double precision
        std::vector<double> s(n), yv(n);
        for (size_t i = 0; i < n; ++i) s[i] = xn[i] - x[i], yv[i] = gn[i] - g[i];
        double sy = dot(s, yv);
        if (sy > 1e-12) {
            if ((int)S.size() == m) S.erase(S.begin()), Y.erase(Y.begin()), rho.erase(rho.begin());
            S.push_back(std::move(s)), Y.push_back(std::move(yv)), rho.push_back(1.0 / sy);
        }
        x.swap(xn), g.swap(gn);
        double df = f - fn;
        f = fn;
        if (df <= 1e-12 * std::max(1.0, std::fabs(f))) break;
    }
    return x;
}

}  // namespace

detail::PreparedData detail::prepare_training(const Dataset& data, const TrainOptions& opt) {
    if (data.rows.empty()) throw RouterError(data.file + ": no training rows");
    if (opt.hash_bits < 8 || opt.hash_bits > 20) throw RouterError("hash_bits must be in [8, 20]");
    if (!(opt.l2 >= 0) || opt.max_iters < 0) throw RouterError("l2 must be >= 0 and max_iters >= 0");
    PreparedData pd;
    FeatureConfig& cfg = pd.cfg;
    cfg.hash_bits = opt.hash_bits;
    cfg.bigrams = opt.bigrams;
    cfg.signals = data.signals;
    const size_t N = data.rows.size(), D = (size_t)cfg.n_dense();
    std::vector<double> raw(N * D);
    for (size_t i = 0; i < N; ++i) {
        const TrainingRow& r = data.rows[i];
        FeatureVector f;
        try {
            f = extract_features(cfg, r.query, r.signals, false);
        } catch (const RouterError& e) {
            throw RouterError(data.file + ":" + std::to_string(r.line) + ": " + e.what());
        }
        pd.buckets.push_back(std::move(f.buckets));
        std::copy(f.dense.begin(), f.dense.end(), raw.begin() + i * D);
    }
    cfg.dense_mean.assign(D, 0.0);
    cfg.dense_std.assign(D, 0.0);
    for (size_t k = 0; k < D; ++k) {
        for (size_t i = 0; i < N; ++i) cfg.dense_mean[k] += raw[i * D + k];
        cfg.dense_mean[k] /= (double)N;
        for (size_t i = 0; i < N; ++i) cfg.dense_std[k] += std::pow(raw[i * D + k] - cfg.dense_mean[k], 2);
        cfg.dense_std[k] = std::sqrt(cfg.dense_std[k] / (double)N);
        if (!(cfg.dense_std[k] > 1e-12)) cfg.dense_std[k] = 1.0;
    }
    pd.z.resize(N * D);
    for (size_t i = 0; i < N; ++i)
        for (size_t k = 0; k < D; ++k) pd.z[i * D + k] = (raw[i * D + k] - cfg.dense_mean[k]) / cfg.dense_std[k];
    pd.y = make_labels(data.rows, opt.labels, &pd.t);
    return pd;
}

std::unique_ptr<LogisticRouter> train_logistic_router(const Dataset& data, const TrainOptions& opt) {
    detail::PreparedData pd = detail::prepare_training(data, opt);
    Problem p;
    p.B = (size_t)pd.cfg.n_buckets();
    p.D = (size_t)pd.cfg.n_dense();
    p.l2 = opt.l2;
    p.buckets = std::move(pd.buckets);
    p.z = std::move(pd.z);
    p.y = std::move(pd.y);

    LogisticRouter::Training tr;
    tr.labels = opt.labels;
    tr.t = pd.t;
    tr.l2 = opt.l2;
    tr.n_rows = (int64_t)data.rows.size();

    std::vector<double> th = lbfgs(p, opt.max_iters, opt.grad_tol);
    std::vector<double> bucket_w(th.begin(), th.begin() + p.B);
    std::vector<double> dense_w(th.begin() + p.B, th.begin() + p.B + p.D);
    auto r = std::make_unique<LogisticRouter>(std::move(pd.cfg), std::move(bucket_w), std::move(dense_w), th[p.B + p.D], tr);
    r->set_threshold(opt.threshold);
    return r;
}

}  // namespace tandem
