// bench-router: (1) router scoring latency, p50/p99 per call, against the 1 ms budget and
// against feature extraction alone measured in the same run; (2) the paper's Table 1 on
// synthetic data with known structure: quality drop vs all-cloud at 10/20/40% cost advantage
// (share of queries answered locally) for the det, prob and trans labels and for random, on
// three model pairs (small, medium and wide quality gap).
//
//   bench-router [--calls N] [--train-rows N] [--test-rows N]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tandem/router.h"
#include "tandem/router_eval.h"
#include "tandem/router_mlp.h"
#include "tandem/router_synth.h"
#include "tandem/router_train.h"

using namespace tandem;
using Clock = std::chrono::steady_clock;

static volatile double g_sink = 0;  // keeps the timed calls alive

struct Percentiles {
    double p50_us, p99_us, mean_us;
};

// Times `fn(i)` once per call for n calls; returns per-call percentiles in microseconds.
template <class F>
static Percentiles time_calls(int n, F fn) {
    std::vector<double> us(n);
    for (int i = 0; i < n; ++i) {
        auto t0 = Clock::now();
        g_sink = g_sink + fn(i);
        us[i] = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    }
    double mean = 0;
    for (double x : us) mean += x / n;
    std::sort(us.begin(), us.end());
    return {us[n / 2], us[(size_t)(0.99 * (n - 1))], mean};
}

int main(int argc, char** argv) {
    int calls = 20000, train_rows = 3000, test_rows = 2000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--calls")) calls = std::atoi(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--train-rows")) train_rows = std::atoi(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--test-rows")) test_rows = std::atoi(argv[i + 1]);
        else {
            std::fprintf(stderr, "usage: bench-router [--calls N] [--train-rows N] [--test-rows N]\n");
            return 2;
        }
    }
    if (calls < 100 || train_rows < 100 || test_rows < 100) {
        std::fprintf(stderr, "bench-router: need at least 100 calls and rows\n");
        return 2;
    }

    // ---- (1) latency ---------------------------------------------------------------------
    SynthOptions so;
    so.n_rows = train_rows;
    so.seed = 1;
    Dataset train = make_synthetic_routing_data(so);
    so.n_rows = test_rows;
    so.seed = 3;
    Dataset test = make_synthetic_routing_data(so);
    TrainOptions opt;
    opt.labels = LabelMode::trans;
    auto t0 = Clock::now();
    std::unique_ptr<LogisticRouter> router = train_logistic_router(train, opt);
    double train_s = std::chrono::duration<double>(Clock::now() - t0).count();

    const size_t nq = test.rows.size();
    double mean_chars = 0;
    for (const TrainingRow& r : test.rows) mean_chars += (double)r.query.size() / (double)nq;
    const FeatureConfig& cfg = router->config();
    for (int warm = 0; warm < 1000; ++warm) g_sink = g_sink + router->score(test.rows[warm % nq].query, {});
    Percentiles feat = time_calls(calls, [&](int i) {
        return (double)extract_features(cfg, test.rows[i % nq].query, {}, false).buckets.size();
    });
    Percentiles score = time_calls(calls, [&](int i) { return router->score(test.rows[i % nq].query, {}); });
    RoutePolicy pol;
    pol.top_k = 5;
    Percentiles decide = time_calls(calls, [&](int i) { return router->decide(test.rows[i % nq].query, {}, pol).score; });
    std::unique_ptr<MlpRouter> mlp_router = train_mlp_router(train, opt);
    Percentiles mlp = time_calls(calls, [&](int i) { return mlp_router->score(test.rows[i % nq].query, {}); });
    RandomRouter rnd(0);
    Percentiles random = time_calls(calls, [&](int i) { return rnd.score(test.rows[i % nq].query, {}); });

    std::printf("## Scoring latency (%d calls over %zu synthetic queries, mean %.0f bytes; hash_bits %d, bigrams on)\n\n",
                calls, nq, mean_chars, cfg.hash_bits);
    std::printf("| call | p50 us | p99 us | mean us | p99 / 1 ms budget | p50 / feature extraction p50 |\n");
    std::printf("| --- | ---: | ---: | ---: | ---: | ---: |\n");
    auto line = [&](const char* name, const Percentiles& p) {
        std::printf("| %s | %.2f | %.2f | %.2f | %.4f | %.2fx |\n", name, p.p50_us, p.p99_us, p.mean_us, p.p99_us / 1000.0,
                    p.p50_us / feat.p50_us);
    };
    line("extract_features (baseline)", feat);
    line("LogisticRouter::score", score);
    line("Router::decide, top 5 features", decide);
    line("MlpRouter::score (8 hidden)", mlp);
    line("RandomRouter::score", random);
    std::printf("\ntraining (trans labels, %d rows, L-BFGS): %.2f s\n\n", train_rows, train_s);

    // ---- (2) Table 1 ---------------------------------------------------------------------
    struct Pair {
        const char* name;
        double offset, gap;
    };
    const Pair pairs[] = {{"close (offset 0, gap 0.1)", 0.0, 0.1},
                          {"medium (offset 0.05, gap 0.2)", 0.05, 0.2},
                          {"wide (offset 0.15, gap 0.3)", 0.15, 0.3}};
    const int kSeeds = 3;  // train seed s, test seed 100 + s, s = 1..kSeeds; means reported
    std::printf("## Table 1 analogue: quality drop (%%) vs all-cloud at a cost advantage (local share) of 10/20/40%%\n\n");
    std::printf("Synthetic data (router_synth.h): train %d rows (seed s), test %d rows (seed 100 + s), mean over\n"
                "s = 1..%d; 10 samples per model, noise 0.1, hidden per-query difficulty 0.05. Lower is better;\n"
                "negative = better than all-cloud. APGR: mean +- std over the seeds.\n\n",
                train_rows, test_rows, kSeeds);
    std::printf("| model pair | Q local | Q cloud | router | 10%% | 20%% | 40%% | APGR | t |\n");
    std::printf("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |\n");
    struct Acc {
        double drop[3] = {0, 0, 0}, apgr = 0, apgr2 = 0, t = 0;
        void add(const double d[3], double a, double tt) {
            for (int i = 0; i < 3; ++i) drop[i] += d[i] / kSeeds;
            apgr += a / kSeeds, apgr2 += a * a / kSeeds, t += tt / kSeeds;
        }
        double sd() const { return std::sqrt(std::max(0.0, apgr2 - apgr * apgr)); }
    };
    for (const Pair& p : pairs) {
        Acc acc[5];  // det, prob, trans, random, mlp (trans labels)
        double q_local = 0, q_cloud = 0;
        for (int seed = 1; seed <= kSeeds; ++seed) {
            SynthOptions po;
            po.gap = p.gap;
            po.offset = p.offset;
            po.n_rows = train_rows;
            po.seed = (uint64_t)seed;
            Dataset tr = make_synthetic_routing_data(po);
            po.n_rows = test_rows;
            po.seed = 100 + (uint64_t)seed;
            Dataset te = make_synthetic_routing_data(po);
            for (LabelMode m : {LabelMode::det, LabelMode::prob, LabelMode::trans}) {
                TrainOptions o;
                o.labels = m;
                std::unique_ptr<LogisticRouter> r = train_logistic_router(tr, o);
                EvalReport rep = evaluate_router(*r, te);
                acc[(int)m].add(rep.drop_at_local, rep.apgr, r->training().t);
                if (m == LabelMode::trans) {
                    std::unique_ptr<MlpRouter> mr = train_mlp_router(tr, o);
                    EvalReport mrep = evaluate_router(*mr, te);
                    acc[4].add(mrep.drop_at_local, mrep.apgr, mr->training().t);
                    acc[3].add(rep.random_drop_at_local, rep.apgr_random, 0);
                    q_local += rep.q_local / kSeeds, q_cloud += rep.q_cloud / kSeeds;
                }
            }
        }
        const char* names[5] = {"r_det", "r_prob", "r_trans", "random (10 seeds)", "r_trans, MLP (8 hidden)"};
        for (int k : {0, 1, 2, 4, 3}) {
            std::printf("| %s | %.4f | %.4f | %s | %.2f | %.2f | %.2f | %.3f +- %.3f | ", p.name, q_local, q_cloud, names[k],
                        acc[k].drop[0], acc[k].drop[1], acc[k].drop[2], acc[k].apgr, acc[k].sd());
            if (k != 3) std::printf("%.3f |\n", acc[k].t);
            else std::printf(" |\n");
        }
    }
    return g_sink == 12345.678 ? 1 : 0;
}
