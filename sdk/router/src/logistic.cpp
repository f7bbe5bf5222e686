// The logistic router: scoring, explaining, and its part of the router file.
#include <algorithm>
#include <cmath>

#include "json_fields.h"
#include "router_file.h"
#include "tandem/router_math.h"
#include "tandem/router.h"

namespace tandem {

using detail::json;

// Word-splitting and hashing rules version written to the file; a change to features.cpp's
// rules must bump it so old routers are refused instead of silently mis-scored.
constexpr const char* kTokenizerId = "tandem-words-v1";


LogisticRouter::LogisticRouter(FeatureConfig cfg, std::vector<double> bucket_w, std::vector<double> dense_w,
                               double bias, Training training)
    : cfg_(std::move(cfg)), bucket_w_(std::move(bucket_w)), dense_w_(std::move(dense_w)), bias_(bias),
      training_(training) {
    if (cfg_.hash_bits < 8 || cfg_.hash_bits > 20) throw RouterError("hash_bits must be in [8, 20]");
    if ((int)bucket_w_.size() != cfg_.n_buckets()) throw RouterError("bucket weight count != 2^hash_bits");
    if ((int)dense_w_.size() != cfg_.n_dense() || (int)cfg_.dense_mean.size() != cfg_.n_dense() ||
        (int)cfg_.dense_std.size() != cfg_.n_dense())
        throw RouterError("dense weight/mean/std count != number of dense features");
    for (double& s : cfg_.dense_std)
        if (!(s > 0)) s = 1.0;
}

double LogisticRouter::logit(const FeatureVector& f) const {
    double z = bias_;
    for (uint32_t b : f.buckets) z += bucket_w_[b];
    for (int i = 0; i < cfg_.n_dense(); ++i) z += dense_w_[i] * (f.dense[i] - cfg_.dense_mean[i]) / cfg_.dense_std[i];
    return z;
}

double LogisticRouter::score(std::string_view query, const RouterSignals& signals) const {
    return sigmoid(logit(extract_features(cfg_, query, signals, false)));
}

std::vector<Contribution> LogisticRouter::explain(std::string_view query, const RouterSignals& signals,
                                                  size_t top_k) const {
    FeatureVector f = extract_features(cfg_, query, signals, true);
    std::vector<Contribution> c;
    for (size_t i = 0; i < f.buckets.size(); ++i)
        if (bucket_w_[f.buckets[i]] != 0.0) c.push_back({f.names[i], bucket_w_[f.buckets[i]]});
    for (int i = 0; i < cfg_.n_dense(); ++i)
        c.push_back({cfg_.dense_name(i), dense_w_[i] * (f.dense[i] - cfg_.dense_mean[i]) / cfg_.dense_std[i]});
    std::sort(c.begin(), c.end(), [](const Contribution& a, const Contribution& b) {
        double x = std::fabs(a.value), y = std::fabs(b.value);
        return x != y ? x > y : a.name < b.name;
    });
    if (c.size() > top_k) c.resize(top_k);
    return c;
}

double LogisticRouter::ngram_weight(std::string_view ngram) const {
    return bucket_w_[fnv1a32(ngram) & (uint32_t)(cfg_.n_buckets() - 1)];
}

// ---- router file --------------------------------------------------------------------------

void detail::trained_to_json(const FeatureConfig& cfg, const TrainingInfo& training, json& out) {
    out["label_mode"] = label_mode_name(training.labels);
    out["t"] = training.t;
    out["training"] = {{"l2", training.l2}, {"n_rows", training.n_rows}};
    json signals = json::array(), dense = json::array();
    for (Signal s : cfg.signals) signals.push_back(kSignalNames[(int)s]);
    for (int i = 0; i < cfg.n_dense(); ++i) dense.push_back(cfg.dense_name(i));
    out["features"] = {{"tokenizer", kTokenizerId},
                       {"hash", "fnv1a32"},
                       {"hash_bits", cfg.hash_bits},
                       {"ngrams", cfg.bigrams ? json::array({1, 2}) : json::array({1})},
                       {"signals", signals},
                       {"dense", dense},
                       {"dense_mean", cfg.dense_mean},
                       {"dense_std", cfg.dense_std}};
}

void LogisticRouter::to_json(json& out) const {
    detail::trained_to_json(cfg_, training_, out);
    json buckets = json::array();
    for (size_t b = 0; b < bucket_w_.size(); ++b)
        if (bucket_w_[b] != 0.0) buckets.push_back(json::array({b, bucket_w_[b]}));
    out["model"] = {{"bias", bias_}, {"dense_weights", dense_w_}, {"bucket_weights", buckets}};
}

void detail::trained_from_json(const json& j, const std::string& file, FeatureConfig& cfg, TrainingInfo& tr) {
    std::string mode = detail::get_string(j, "label_mode", file, "");
    try {
        tr.labels = parse_label_mode(mode);
    } catch (const RouterError& e) {
        detail::field_error(file, "label_mode", e.what());
    }
    tr.t = detail::get_number(j, "t", file, "");
    const json& jt = detail::require(j, "training", file, "");
    tr.l2 = detail::get_number(jt, "l2", file, "training");
    tr.n_rows = detail::get_int(jt, "n_rows", file, "training", 0, INT64_MAX);

    const json& jf = detail::require(j, "features", file, "");
    cfg = FeatureConfig();
    std::string tok = detail::get_string(jf, "tokenizer", file, "features");
    if (tok != kTokenizerId)
        detail::field_error(file, "features.tokenizer", "unsupported word rules '" + tok + "' (this build: " + kTokenizerId + ")");
    std::string hash = detail::get_string(jf, "hash", file, "features");
    if (hash != "fnv1a32") detail::field_error(file, "features.hash", "unsupported hash '" + hash + "' (expected fnv1a32)");
    cfg.hash_bits = (int)detail::get_int(jf, "hash_bits", file, "features", 8, 20);
    const json& ng = detail::require(jf, "ngrams", file, "features");
    if (ng == json::array({1, 2})) cfg.bigrams = true;
    else if (ng == json::array({1})) cfg.bigrams = false;
    else detail::field_error(file, "features.ngrams", "expected [1] or [1, 2]");
    const json& sig = detail::require(jf, "signals", file, "features");
    if (!sig.is_array()) detail::field_error(file, "features.signals", "expected an array of signal names");
    for (const json& s : sig) {
        int found = -1;
        for (int k = 0; k < kSignalCount; ++k)
            if (s.is_string() && s.get<std::string>() == kSignalNames[k]) found = k;
        if (found < 0) detail::field_error(file, "features.signals", "unknown signal " + s.dump());
        if (!cfg.signals.empty() && (int)cfg.signals.back() >= found)
            detail::field_error(file, "features.signals", "signals must be distinct and in canonical order");
        cfg.signals.push_back((Signal)found);
    }
    const json& dense = detail::require(jf, "dense", file, "features");
    json expect = json::array();
    for (int i = 0; i < cfg.n_dense(); ++i) expect.push_back(cfg.dense_name(i));
    if (dense != expect) detail::field_error(file, "features.dense", "expected " + expect.dump());
    cfg.dense_mean = detail::number_array(jf, "dense_mean", file, "features", cfg.n_dense());
    cfg.dense_std = detail::number_array(jf, "dense_std", file, "features", cfg.n_dense());
    for (double s : cfg.dense_std)
        if (!(s > 0)) detail::field_error(file, "features.dense_std", "must be > 0");
}

std::unique_ptr<Router> LogisticRouter::from_json(const json& j, const std::string& file) {
    FeatureConfig cfg;
    Training tr;
    detail::trained_from_json(j, file, cfg, tr);

    const json& jm = detail::require(j, "model", file, "");
    double bias = detail::get_number(jm, "bias", file, "model");
    std::vector<double> dense_w = detail::number_array(jm, "dense_weights", file, "model", cfg.n_dense());
    std::vector<double> bucket_w(cfg.n_buckets(), 0.0);
    std::vector<char> seen(cfg.n_buckets(), 0);
    const json& bw = detail::require(jm, "bucket_weights", file, "model");
    if (!bw.is_array()) detail::field_error(file, "model.bucket_weights", "expected an array of [bucket, weight]");
    for (const json& p : bw) {
        if (!p.is_array() || p.size() != 2 || !p[0].is_number_unsigned() || !p[1].is_number() ||
            p[0].get<uint64_t>() >= (uint64_t)cfg.n_buckets() || !std::isfinite(p[1].get<double>()))
            detail::field_error(file, "model.bucket_weights",
                                "bad entry " + p.dump() + " (expected [bucket < 2^hash_bits, finite weight])");
        uint64_t b = p[0].get<uint64_t>();
        if (seen[b]) detail::field_error(file, "model.bucket_weights", "bucket " + std::to_string(b) + " listed twice");
        seen[b] = 1;
        bucket_w[b] = p[1].get<double>();
    }
    return std::unique_ptr<Router>(new LogisticRouter(std::move(cfg), std::move(bucket_w), std::move(dense_w), bias, tr));
}

}  // namespace tandem
