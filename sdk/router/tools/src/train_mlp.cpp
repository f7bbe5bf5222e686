// The MLP router's trainer: full-batch Adam on the logistic router's labels and features
// (tandem/router_mlp.h describes the model, tandem/router_train.h the options).
#include <algorithm>
#include <cmath>

#include "tandem/router_math.h"
#include "tandem/router_mlp.h"
#include "tandem/router_train.h"
#include "train_common.h"

namespace tandem {

namespace {

struct SplitMix {
    SplitMix64 s;
    double uniform() { return ((double)(s.next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }  // (0,1)
    double normal() { return std::sqrt(-2.0 * std::log(uniform())) * std::cos(6.283185307179586 * uniform()); }
};

}  // namespace

std::unique_ptr<MlpRouter> train_mlp_router(const Dataset& data, const TrainOptions& opt, const MlpOptions& mlp) {
    if (mlp.hidden < 1 || mlp.hidden > MlpRouter::kMaxHidden) throw RouterError("mlp hidden size must be in [1, 64]");
    if (mlp.steps < 0 || !(mlp.lr > 0)) throw RouterError("mlp steps must be >= 0 and lr > 0");
    detail::PreparedData pd = detail::prepare_training(data, opt);
    const size_t N = pd.y.size(), B = (size_t)pd.cfg.n_buckets(), D = (size_t)pd.cfg.n_dense(), H = (size_t)mlp.hidden;
    // theta = [W (B*H), U (D*H), b1 (H), v (H), b2]
    const size_t oW = 0, oU = B * H, oB1 = oU + D * H, oV = oB1 + H, oB2 = oV + H, P = oB2 + 1;
    std::vector<double> th(P, 0.0), g(P), m(P, 0.0), s2(P, 0.0);
    SplitMix rng{{mlp.seed}};
    for (size_t k = 0; k < D * H; ++k) th[oU + k] = rng.normal() * 0.5 / std::sqrt((double)D);
    for (size_t j = 0; j < H; ++j) th[oV + j] = rng.normal() * 0.5;
    std::vector<double> pre(H), hv(H), delta(H);
    const double b1c = 0.9, b2c = 0.999, eps = 1e-8;
    for (int step = 1; step <= mlp.steps; ++step) {
        std::fill(g.begin(), g.end(), 0.0);
        for (size_t i = 0; i < N; ++i) {
            for (size_t j = 0; j < H; ++j) pre[j] = th[oB1 + j];
            for (uint32_t b : pd.buckets[i])
                for (size_t j = 0; j < H; ++j) pre[j] += th[oW + b * H + j];
            for (size_t k = 0; k < D; ++k)
                for (size_t j = 0; j < H; ++j) pre[j] += th[oU + k * H + j] * pd.z[i * D + k];
            double a = th[oB2];
            for (size_t j = 0; j < H; ++j) hv[j] = std::tanh(pre[j]), a += th[oV + j] * hv[j];
            double r = (sigmoid(a) - pd.y[i]) / (double)N;
            g[oB2] += r;
            for (size_t j = 0; j < H; ++j) {
                g[oV + j] += r * hv[j];
                delta[j] = r * th[oV + j] * (1.0 - hv[j] * hv[j]);
                g[oB1 + j] += delta[j];
            }
            for (uint32_t b : pd.buckets[i])
                for (size_t j = 0; j < H; ++j) g[oW + b * H + j] += delta[j];
            for (size_t k = 0; k < D; ++k)
                for (size_t j = 0; j < H; ++j) g[oU + k * H + j] += delta[j] * pd.z[i * D + k];
        }
        for (size_t k = 0; k < oB1; ++k) g[k] += opt.l2 * th[k];  // W, U
        for (size_t j = 0; j < H; ++j) g[oV + j] += opt.l2 * th[oV + j];
        const double c1 = 1.0 - std::pow(b1c, step), c2 = 1.0 - std::pow(b2c, step);
        for (size_t k = 0; k < P; ++k) {
            if (g[k] == 0.0 && m[k] == 0.0) continue;  // untouched buckets stay exactly 0
            m[k] = b1c * m[k] + (1 - b1c) * g[k];
            s2[k] = b2c * s2[k] + (1 - b2c) * g[k] * g[k];
            th[k] -= mlp.lr * (m[k] / c1) / (std::sqrt(s2[k] / c2) + eps);
        }
    }
    TrainingInfo tr;
    tr.labels = opt.labels;
    tr.t = pd.t;
    tr.l2 = opt.l2;
    tr.n_rows = (int64_t)N;
    auto r = std::make_unique<MlpRouter>(std::move(pd.cfg), (int)H, std::vector<double>(th.begin(), th.begin() + oU),
                                         std::vector<double>(th.begin() + oU, th.begin() + oB1),
                                         std::vector<double>(th.begin() + oB1, th.begin() + oV),
                                         std::vector<double>(th.begin() + oV, th.begin() + oB2), th[oB2], tr);
    r->set_threshold(opt.threshold);
    return r;
}

}  // namespace tandem
