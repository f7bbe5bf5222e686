// Tandem router (Hybrid LLM, Ding et al., ICLR 2024): per query, should the small local model
// answer, or the cloud?
//
// A router is one virtual method, score(query, signals) -> [0,1], the predicted chance that the
// small model's answer is as good as the cloud's (higher = "the small model will do"). The
// base class applies the threshold (local iff score >= threshold), which is a run-time knob,
// and the policies (offline, private, cloud budget) that force local whatever the score.
// Router kinds are registered by name (router_kinds()); the baselines "always-local",
// "always-cloud" and "random" ship beside the trained "logistic" and "mlp" routers.
//
// Router files are JSON (docs/router.md has the full schema):
//   {"format": "tandem-router", "version": 1, "kind": "logistic", "threshold": 0.5, ...}
// Training, labels and evaluation: tandem/router_train.h and tandem/router_eval.h in the tools
// library (sdk/router/tools, not in libtandem). Features: tandem/router_features.h.
// The small MLP router: tandem/router_mlp.h.
#pragma once
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tandem/router_features.h"

namespace tandem {

constexpr int kRouterFormatVersion = 1;

enum class Route { local, cloud };
const char* route_name(Route r);  // "local" / "cloud"

// Why a policy forced the route; none when the router's own score decided.
enum class OverrideReason { none, private_query, offline, budget_calls, budget_tokens };
const char* override_reason_name(OverrideReason r);  // "none", "private", "offline", ...

// ---- cloud budget -------------------------------------------------------------------------

// Counts cloud calls in a sliding hour and tokens in a sliding day. The clock is injectable
// (seconds, monotonic) so tests can move time. Thread-safe (one mutex).
class CloudBudget {
public:
    using Clock = std::function<double()>;
    struct Limits {
        int64_t calls_per_hour = -1;  // < 0: unlimited
        int64_t tokens_per_day = -1;  // < 0: unlimited
    };
    // Default clock: std::chrono::steady_clock in seconds.
    explicit CloudBudget(Limits limits, Clock clock = nullptr);

    // Returns none when a cloud call expected to use `tokens` (prompt + completion; 0 if
    // unknown) fits the budget now, else budget_calls (calls in the last hour >= the limit) or
    // budget_tokens (tokens in the last day >= the limit, or would exceed it with `tokens`).
    OverrideReason check(int64_t tokens) const;
    // Records one cloud call that used `tokens`. decide() never records: the caller does,
    // after the call, with the tokens actually spent.
    void record(int64_t tokens);
    int64_t calls_last_hour() const;
    int64_t tokens_last_day() const;
    const Limits& limits() const { return limits_; }

private:
    void prune(double now) const;  // drops events older than a day; needs mu_
    Limits limits_;
    Clock clock_;
    mutable std::mutex mu_;
    mutable std::deque<std::pair<double, int64_t>> events_;  // (time s, tokens), oldest first
};

// ---- decisions ----------------------------------------------------------------------------

struct RoutePolicy {
    bool offline = false;            // no network: local
    bool private_query = false;      // the user marked the query private: local, always
    CloudBudget* budget = nullptr;   // not owned; nullptr = no budget
    int64_t expected_tokens = 0;     // for the budget's tokens-per-day check
    size_t top_k = 5;                // how many contributing features to report
};

// One feature's contribution to the score's logit (> 0 pushes towards local).
struct Contribution {
    std::string name;  // "uni:word", "bi:w1 w2", "len_chars", "signal:gen_entropy", ...
    double value;
};

struct Decision {
    Route route;                      // what to do
    Route router_route;               // what the score alone says (score >= threshold -> local)
    double score;                     // in [0,1]
    double threshold;                 // the threshold used
    OverrideReason reason;            // set when a policy forced `route`
    std::vector<Contribution> top_features;  // largest |value| first; empty for baselines
};

// ---- the router interface -----------------------------------------------------------------

enum class LabelMode { det, prob, trans };
const char* label_mode_name(LabelMode m);           // "det", "prob", "trans"
LabelMode parse_label_mode(const std::string& s);   // throws RouterError listing the valid names

class Router {
public:
    explicit Router(double threshold = 0.5) : threshold_(threshold) {}
    virtual ~Router() = default;

    // The registered kind name ("logistic", "random", ...).
    virtual std::string kind() const = 0;
    // Chance in [0,1] that the small model's answer is as good as the cloud's. Throws
    // RouterError when a signal the router needs is missing. Thread-safe.
    virtual double score(std::string_view query, const RouterSignals& signals) const = 0;
    // The signals score() reads (in kSignalNames order): the caller computes these, and only
    // these, before scoring. Baselines and text-only routers read none.
    virtual std::vector<Signal> signals() const { return {}; }
    // The top_k features by |contribution| to this query's score; baselines return none.
    virtual std::vector<Contribution> explain(std::string_view query, const RouterSignals& signals,
                                              size_t top_k) const;
    // Writes the kind's own fields into the router file's JSON object (format, version, kind
    // and threshold are written by save()).
    virtual void to_json(nlohmann::json& out) const = 0;

    // The run-time knob, in [0,1]; set_threshold throws RouterError outside it. Safe to call
    // while other threads decide.
    double threshold() const { return threshold_.load(std::memory_order_relaxed); }
    void set_threshold(double t);

    // local iff score >= threshold.
    Route route(std::string_view query, const RouterSignals& signals) const;
    // Scores the query and applies the policies, in this order: private -> local, offline ->
    // local, budget spent -> local (checked only when the score says cloud). Never records
    // into the budget. Throws RouterError like score().
    Decision decide(std::string_view query, const RouterSignals& signals,
                    const RoutePolicy& policy) const;

    // Writes the router file (JSON, atomically via a temp file + rename). Throws RouterError.
    void save(const std::string& path) const;

private:
    std::atomic<double> threshold_;
};

// ---- registry and baselines ---------------------------------------------------------------

struct RouterKind {
    const char* name;
    const char* summary;
    // Builds an untrained default instance; nullptr for kinds that must be trained.
    std::unique_ptr<Router> (*create)();
    // Reads the kind's fields from a router file; `file` names it in errors.
    std::unique_ptr<Router> (*from_json)(const nlohmann::json& j, const std::string& file);
};
const std::vector<RouterKind>& router_kinds();

// A default instance of a registered kind; throws RouterError naming the valid kinds.
std::unique_ptr<Router> make_router(const std::string& kind);
// Reads a router file. Throws RouterError "FILE: field 'F': why" for a missing file, bad
// JSON, a wrong format/version, or any bad field.
std::unique_ptr<Router> load_router(const std::string& path);
std::unique_ptr<Router> router_from_json(const nlohmann::json& j, const std::string& file);

// Always 1.0: every query stays local (the shipped baseline and the safe default).
class AlwaysLocalRouter : public Router {
public:
    std::string kind() const override { return "always-local"; }
    double score(std::string_view, const RouterSignals&) const override { return 1.0; }
    void to_json(nlohmann::json& out) const override;
};

// Always 0.0: every query goes to the cloud unless the threshold is 0 or a policy forces local.
class AlwaysCloudRouter : public Router {
public:
    std::string kind() const override { return "always-cloud"; }
    double score(std::string_view, const RouterSignals&) const override { return 0.0; }
    void to_json(nlohmann::json& out) const override;
};

// A uniform pseudo-random score from (seed, FNV-1a of the query) via splitmix64: the same
// query always gets the same score, and different seeds are independent.
class RandomRouter : public Router {
public:
    explicit RandomRouter(uint64_t seed = 0) : seed_(seed) {}
    std::string kind() const override { return "random"; }
    double score(std::string_view query, const RouterSignals&) const override;
    void to_json(nlohmann::json& out) const override;
    uint64_t seed() const { return seed_; }

private:
    uint64_t seed_;
};

// How a trained router was trained; saved in its file.
struct TrainingInfo {
    LabelMode labels = LabelMode::det;
    double t = 0.0;      // the trans label's relaxation (0 for det and prob)
    double l2 = 0.0;     // L2 strength used
    int64_t n_rows = 0;  // training rows
};

// Logistic regression over FeatureConfig's features: score = sigmoid(bias + sum_b w_b [b hit]
// + sum_i v_i z_i). Trained by train_logistic_router() (router_train.h).
class LogisticRouter : public Router {
public:
    using Training = TrainingInfo;
    // bucket_w: (cfg.n_buckets()); dense_w: (cfg.n_dense()). Throws RouterError on size mismatch.
    LogisticRouter(FeatureConfig cfg, std::vector<double> bucket_w, std::vector<double> dense_w,
                   double bias, Training training);

    std::string kind() const override { return "logistic"; }
    double score(std::string_view query, const RouterSignals& signals) const override;
    std::vector<Signal> signals() const override { return cfg_.signals; }
    std::vector<Contribution> explain(std::string_view query, const RouterSignals& signals,
                                      size_t top_k) const override;
    void to_json(nlohmann::json& out) const override;
    static std::unique_ptr<Router> from_json(const nlohmann::json& j, const std::string& file);

    // The logit of a computed feature vector (used by training and evaluation).
    double logit(const FeatureVector& f) const;
    const FeatureConfig& config() const { return cfg_; }
    const Training& training() const { return training_; }
    double bias() const { return bias_; }
    double bucket_weight(uint32_t bucket) const { return bucket_w_.at(bucket); }
    // The weight of an n-gram's bucket: "word" for a unigram, "w1 w2" for a bigram (lower-case).
    double ngram_weight(std::string_view ngram) const;
    double dense_weight(int i) const { return dense_w_.at(i); }

private:
    FeatureConfig cfg_;
    std::vector<double> bucket_w_;  // (n_buckets)
    std::vector<double> dense_w_;   // (n_dense)
    double bias_;
    Training training_;
};

}  // namespace tandem
