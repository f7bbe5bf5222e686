// The small MLP router: scoring, occlusion explanations and its router-file part.
// Definitions: tandem/router_mlp.h; its trainer is in the tools library (router/tools/src/train_mlp.cpp).
#include "tandem/router_mlp.h"

#include <algorithm>
#include <cmath>

#include "router_file.h"
#include "tandem/router_math.h"

namespace tandem {

using detail::json;

constexpr int kMaxHidden = MlpRouter::kMaxHidden;

MlpRouter::MlpRouter(FeatureConfig cfg, int hidden, std::vector<double> w, std::vector<double> u,
                     std::vector<double> b1, std::vector<double> v, double b2, TrainingInfo training)
    : cfg_(std::move(cfg)), h_(hidden), w_(std::move(w)), u_(std::move(u)), b1_(std::move(b1)), v_(std::move(v)),
      b2_(b2), training_(training) {
    if (h_ < 1 || h_ > kMaxHidden) throw RouterError("mlp hidden size must be in [1, 64]");
    if (cfg_.hash_bits < 8 || cfg_.hash_bits > 20) throw RouterError("hash_bits must be in [8, 20]");
    if (w_.size() != (size_t)cfg_.n_buckets() * h_ || u_.size() != (size_t)cfg_.n_dense() * h_ ||
        b1_.size() != (size_t)h_ || v_.size() != (size_t)h_ || (int)cfg_.dense_mean.size() != cfg_.n_dense() ||
        (int)cfg_.dense_std.size() != cfg_.n_dense())
        throw RouterError("mlp weight sizes do not match the feature configuration");
    for (double& s : cfg_.dense_std)
        if (!(s > 0)) s = 1.0;
}

double MlpRouter::head(const double* pre) const {
    double a = b2_;
    for (int j = 0; j < h_; ++j) a += v_[j] * std::tanh(pre[j]);
    return a;
}

// pre (H) for feature vector f.
static void preactivation(const FeatureConfig& cfg, int h, const std::vector<double>& w, const std::vector<double>& u,
                          const std::vector<double>& b1, const FeatureVector& f, double* pre) {
    for (int j = 0; j < h; ++j) pre[j] = b1[j];
    for (uint32_t b : f.buckets)
        for (int j = 0; j < h; ++j) pre[j] += w[(size_t)b * h + j];
    for (int i = 0; i < cfg.n_dense(); ++i) {
        double z = (f.dense[i] - cfg.dense_mean[i]) / cfg.dense_std[i];
        for (int j = 0; j < h; ++j) pre[j] += u[(size_t)i * h + j] * z;
    }
}

double MlpRouter::logit(const FeatureVector& f) const {
    double pre[kMaxHidden];
    preactivation(cfg_, h_, w_, u_, b1_, f, pre);
    return head(pre);
}

double MlpRouter::score(std::string_view query, const RouterSignals& signals) const {
    return sigmoid(logit(extract_features(cfg_, query, signals, false)));
}

std::vector<Contribution> MlpRouter::explain(std::string_view query, const RouterSignals& signals,
                                             size_t top_k) const {
    FeatureVector f = extract_features(cfg_, query, signals, true);
    double pre[kMaxHidden], off[kMaxHidden];
    preactivation(cfg_, h_, w_, u_, b1_, f, pre);
    const double full = head(pre);
    std::vector<Contribution> c;
    for (size_t k = 0; k < f.buckets.size(); ++k) {
        const double* wb = &w_[(size_t)f.buckets[k] * h_];
        bool zero = true;
        for (int j = 0; j < h_; ++j) off[j] = pre[j] - wb[j], zero = zero && wb[j] == 0.0;
        if (!zero) c.push_back({f.names[k], full - head(off)});
    }
    for (int i = 0; i < cfg_.n_dense(); ++i) {
        double z = (f.dense[i] - cfg_.dense_mean[i]) / cfg_.dense_std[i];
        for (int j = 0; j < h_; ++j) off[j] = pre[j] - u_[(size_t)i * h_ + j] * z;
        c.push_back({cfg_.dense_name(i), full - head(off)});
    }
    std::sort(c.begin(), c.end(), [](const Contribution& a, const Contribution& b) {
        double x = std::fabs(a.value), y = std::fabs(b.value);
        return x != y ? x > y : a.name < b.name;
    });
    if (c.size() > top_k) c.resize(top_k);
    return c;
}

// ---- router file --------------------------------------------------------------------------

void MlpRouter::to_json(json& out) const {
    detail::trained_to_json(cfg_, training_, out);
    json dense = json::array(), buckets = json::array();
    for (int i = 0; i < cfg_.n_dense(); ++i)
        dense.push_back(std::vector<double>(u_.begin() + (long)i * h_, u_.begin() + (long)(i + 1) * h_));
    for (size_t b = 0; b < (size_t)cfg_.n_buckets(); ++b) {
        auto first = w_.begin() + (long)(b * h_), last = first + h_;
        if (std::any_of(first, last, [](double x) { return x != 0.0; }))
            buckets.push_back(json::array({b, std::vector<double>(first, last)}));
    }
    out["model"] = {{"hidden", h_}, {"b2", b2_}, {"v", v_}, {"b1", b1_}, {"dense_weights", dense}, {"bucket_weights", buckets}};
}

std::unique_ptr<Router> MlpRouter::from_json(const json& j, const std::string& file) {
    FeatureConfig cfg;
    TrainingInfo tr;
    detail::trained_from_json(j, file, cfg, tr);
    const json& jm = detail::require(j, "model", file, "");
    const int h = (int)detail::get_int(jm, "hidden", file, "model", 1, kMaxHidden);
    double b2 = detail::get_number(jm, "b2", file, "model");
    std::vector<double> v = detail::number_array(jm, "v", file, "model", (size_t)h);
    std::vector<double> b1 = detail::number_array(jm, "b1", file, "model", (size_t)h);
    const json& dw = detail::require(jm, "dense_weights", file, "model");
    if (!dw.is_array() || (int)dw.size() != cfg.n_dense())
        detail::field_error(file, "model.dense_weights", "expected " + std::to_string(cfg.n_dense()) + " rows of " + std::to_string(h));
    std::vector<double> u;
    for (size_t i = 0; i < dw.size(); ++i) {
        std::vector<double> r = detail::number_array_of(dw[i], file, "model.dense_weights", (size_t)h);
        u.insert(u.end(), r.begin(), r.end());
    }
    std::vector<double> w((size_t)cfg.n_buckets() * h, 0.0);
    std::vector<char> seen(cfg.n_buckets(), 0);
    const json& bw = detail::require(jm, "bucket_weights", file, "model");
    if (!bw.is_array()) detail::field_error(file, "model.bucket_weights", "expected an array of [bucket, [H weights]]");
    for (const json& p : bw) {
        if (!p.is_array() || p.size() != 2 || !p[0].is_number_unsigned() || p[0].get<uint64_t>() >= (uint64_t)cfg.n_buckets())
            detail::field_error(file, "model.bucket_weights", "bad entry " + p.dump().substr(0, 80) + " (expected [bucket < 2^hash_bits, [H weights]])");
        uint64_t b = p[0].get<uint64_t>();
        if (seen[b]) detail::field_error(file, "model.bucket_weights", "bucket " + std::to_string(b) + " listed twice");
        seen[b] = 1;
        std::vector<double> r = detail::number_array_of(p[1], file, "model.bucket_weights", (size_t)h);
        std::copy(r.begin(), r.end(), w.begin() + (long)(b * h));
    }
    return std::unique_ptr<Router>(new MlpRouter(std::move(cfg), h, std::move(w), std::move(u), std::move(b1), std::move(v), b2, tr));
}

}  // namespace tandem
