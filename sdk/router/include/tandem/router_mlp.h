// The small MLP router: one tanh hidden layer over the logistic router's features.
//
//   pre = b1 + sum_{hit buckets b} W[b] + U^T z        W: (n_buckets, H)  U: (n_dense, H)
//   h   = tanh(pre)                                    b1, v: (H)
//   score = sigmoid(b2 + v . h)
//
// Trained (train_mlp_router in tandem/router_train.h, the tools library) by full-batch Adam on
// the same soft labels and loss as the logistic router (mean
// cross-entropy + l2/2 |W, U, v|^2), a fixed number of steps from a fixed initialisation
// (W = 0, b1 = 0, U and v from splitmix64(seed) via Box-Muller): deterministic. Buckets no
// training row hits stay exactly 0 and are not written to the file.
//
// explain() is by occlusion: a feature's contribution is logit(x) - logit(x without it) (the
// bucket off, or the dense feature at its training mean), since an MLP's logit is not a sum.
//
// Router file (kind "mlp"): the shared fields (label_mode, t, training, features) plus
//   "model": {"hidden": H, "b2": x, "v": [H], "b1": [H], "dense_weights": [[H] x n_dense],
//             "bucket_weights": [[bucket, [H]], ...]}
#pragma once
#include <memory>

#include "tandem/router.h"

namespace tandem {

class MlpRouter : public Router {
public:
    static constexpr int kMaxHidden = 64;
    // w: (n_buckets * H) row-major by bucket; u: (n_dense * H); b1, v: (H). Throws RouterError on
    // size mismatch or H outside 1..64.
    MlpRouter(FeatureConfig cfg, int hidden, std::vector<double> w, std::vector<double> u, std::vector<double> b1,
              std::vector<double> v, double b2, TrainingInfo training);

    std::string kind() const override { return "mlp"; }
    double score(std::string_view query, const RouterSignals& signals) const override;
    std::vector<Signal> signals() const override { return cfg_.signals; }
    std::vector<Contribution> explain(std::string_view query, const RouterSignals& signals,
                                      size_t top_k) const override;
    void to_json(nlohmann::json& out) const override;
    static std::unique_ptr<Router> from_json(const nlohmann::json& j, const std::string& file);

    double logit(const FeatureVector& f) const;
    const FeatureConfig& config() const { return cfg_; }
    const TrainingInfo& training() const { return training_; }
    int hidden() const { return h_; }

private:
    double head(const double* pre) const;  // b2 + v . tanh(pre)
    FeatureConfig cfg_;
    int h_;
    std::vector<double> w_, u_, b1_, v_;
    double b2_;
    TrainingInfo training_;
};

}  // namespace tandem
