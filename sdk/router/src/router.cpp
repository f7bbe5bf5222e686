// The router base class (threshold + policies), the cloud budget, the registry of router
// kinds, router files, and the baseline routers.
#include "tandem/router.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "json_fields.h"
#include "tandem/router_math.h"
#include "tandem/router_mlp.h"

namespace tandem {

using detail::json;

const char* route_name(Route r) { return r == Route::local ? "local" : "cloud"; }

const char* override_reason_name(OverrideReason r) {
    switch (r) {
        case OverrideReason::none: return "none";
        case OverrideReason::private_query: return "private";
        case OverrideReason::offline: return "offline";
        case OverrideReason::budget_calls: return "budget_calls_per_hour";
        case OverrideReason::budget_tokens: return "budget_tokens_per_day";
    }
    return "?";
}

const char* label_mode_name(LabelMode m) {
    switch (m) {
        case LabelMode::det: return "det";
        case LabelMode::prob: return "prob";
        case LabelMode::trans: return "trans";
    }
    return "?";
}

LabelMode parse_label_mode(const std::string& s) {
    if (s == "det") return LabelMode::det;
    if (s == "prob") return LabelMode::prob;
    if (s == "trans") return LabelMode::trans;
    throw RouterError("unknown label mode '" + s + "' (valid: det, prob, trans)");
}

// ---- cloud budget -------------------------------------------------------------------------

constexpr double kHour = 3600.0;
constexpr double kDay = 86400.0;

CloudBudget::CloudBudget(Limits limits, Clock clock) : limits_(limits), clock_(std::move(clock)) {
    if (!clock_) {
        clock_ = [] {
            using namespace std::chrono;
            return duration<double>(steady_clock::now().time_since_epoch()).count();
        };
    }
}

void CloudBudget::prune(double now) const {
    while (!events_.empty() && events_.front().first <= now - kDay) events_.pop_front();
}

OverrideReason CloudBudget::check(int64_t tokens) const {
    std::lock_guard<std::mutex> lock(mu_);
    double now = clock_();
    prune(now);
    if (limits_.calls_per_hour >= 0) {
        int64_t calls = 0;
        for (auto it = events_.rbegin(); it != events_.rend() && it->first > now - kHour; ++it) ++calls;
        if (calls >= limits_.calls_per_hour) return OverrideReason::budget_calls;
    }
    if (limits_.tokens_per_day >= 0) {
        int64_t used = 0;
        for (const auto& e : events_) used += e.second;
        if (used >= limits_.tokens_per_day || used + std::max<int64_t>(tokens, 0) > limits_.tokens_per_day)
            return OverrideReason::budget_tokens;
    }
    return OverrideReason::none;
}

void CloudBudget::record(int64_t tokens) {
    std::lock_guard<std::mutex> lock(mu_);
    double now = clock_();
    prune(now);
    events_.emplace_back(now, std::max<int64_t>(tokens, 0));
}

int64_t CloudBudget::calls_last_hour() const {
    std::lock_guard<std::mutex> lock(mu_);
    double now = clock_();
    prune(now);
    int64_t calls = 0;
    for (auto it = events_.rbegin(); it != events_.rend() && it->first > now - kHour; ++it) ++calls;
    return calls;
}

int64_t CloudBudget::tokens_last_day() const {
    std::lock_guard<std::mutex> lock(mu_);
    prune(clock_());
    int64_t used = 0;
    for (const auto& e : events_) used += e.second;
    return used;
}

// ---- the base class -----------------------------------------------------------------------

std::vector<Contribution> Router::explain(std::string_view, const RouterSignals&, size_t) const { return {}; }

void Router::set_threshold(double t) {
    if (!(t >= 0.0 && t <= 1.0)) throw RouterError("threshold must be in [0, 1], got " + std::to_string(t));
    threshold_.store(t, std::memory_order_relaxed);
}

Route Router::route(std::string_view query, const RouterSignals& signals) const {
    return score(query, signals) >= threshold() ? Route::local : Route::cloud;
}

Decision Router::decide(std::string_view query, const RouterSignals& signals,
                        const RoutePolicy& policy) const {
    Decision d;
    d.threshold = threshold();
    d.score = score(query, signals);
    d.router_route = d.score >= d.threshold ? Route::local : Route::cloud;
    d.route = d.router_route;
    d.reason = OverrideReason::none;
    if (policy.private_query) {
        d.reason = OverrideReason::private_query;
    } else if (policy.offline) {
        d.reason = OverrideReason::offline;
    } else if (d.router_route == Route::cloud && policy.budget) {
        d.reason = policy.budget->check(policy.expected_tokens);
    }
    if (d.reason != OverrideReason::none) d.route = Route::local;
    if (policy.top_k > 0) d.top_features = explain(query, signals, policy.top_k);
    return d;
}

void Router::save(const std::string& path) const {
    json j = json::object();
    j["format"] = "tandem-router";
    j["version"] = kRouterFormatVersion;
    j["kind"] = kind();
    j["threshold"] = threshold();
    to_json(j);
    std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        if (!f) throw RouterError(path + ": cannot write router file (opening " + tmp + " failed)");
        f << j.dump(1) << "\n";
        if (!f.flush()) throw RouterError(path + ": write failed");
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw RouterError(path + ": cannot write router file (rename failed)");
    }
}

// ---- baselines ----------------------------------------------------------------------------

void AlwaysLocalRouter::to_json(json&) const {}
void AlwaysCloudRouter::to_json(json&) const {}

double RandomRouter::score(std::string_view query, const RouterSignals&) const {
    uint64_t x = splitmix64(seed_ ^ splitmix64(fnv1a32(query)));
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);  // 53 bits -> [0,1)
}

void RandomRouter::to_json(json& out) const { out["seed"] = seed_; }

// ---- registry -----------------------------------------------------------------------------

static const std::vector<RouterKind> kKinds = {
    {"logistic", "logistic regression on hashed n-grams, length and signals (trained)", nullptr,
     &LogisticRouter::from_json},
    {"mlp", "one-hidden-layer tanh MLP on the same features (trained)", nullptr, &MlpRouter::from_json},
    {"always-local", "baseline: every query local", [] { return std::unique_ptr<Router>(new AlwaysLocalRouter); },
     [](const json&, const std::string&) { return std::unique_ptr<Router>(new AlwaysLocalRouter); }},
    {"always-cloud", "baseline: every query to the cloud",
     [] { return std::unique_ptr<Router>(new AlwaysCloudRouter); },
     [](const json&, const std::string&) { return std::unique_ptr<Router>(new AlwaysCloudRouter); }},
    {"random", "baseline: uniform pseudo-random score per query",
     [] { return std::unique_ptr<Router>(new RandomRouter(0)); },
     [](const json& j, const std::string& file) {
         int64_t seed = detail::get_int(j, "seed", file, "", 0, INT64_MAX);
         return std::unique_ptr<Router>(new RandomRouter((uint64_t)seed));
     }},
};

const std::vector<RouterKind>& router_kinds() { return kKinds; }

static std::string kind_list() {
    std::string s;
    for (const RouterKind& k : kKinds) s += (s.empty() ? "" : ", ") + std::string(k.name);
    return s;
}

std::unique_ptr<Router> make_router(const std::string& kind) {
    for (const RouterKind& k : kKinds) {
        if (kind != k.name) continue;
        if (!k.create) throw RouterError("router kind '" + kind + "' must be trained (tandem router train)");
        return k.create();
    }
    throw RouterError("unknown router kind '" + kind + "' (valid: " + kind_list() + ")");
}

std::unique_ptr<Router> router_from_json(const json& j, const std::string& file) {
    if (!j.is_object()) throw RouterError(file + ": not a router file (expected a JSON object)");
    std::string format = detail::get_string(j, "format", file, "");
    if (format != "tandem-router") detail::field_error(file, "format", "expected \"tandem-router\", got \"" + format + "\"");
    const json& v = detail::require(j, "version", file, "");
    if (!v.is_number_integer()) detail::field_error(file, "version", "expected an integer");
    if (v.get<int64_t>() != kRouterFormatVersion)
        detail::field_error(file, "version", "unsupported format version " + v.dump() + " (this build reads " +
                                                 std::to_string(kRouterFormatVersion) + ")");
    std::string kind = detail::get_string(j, "kind", file, "");
    double threshold = detail::get_number(j, "threshold", file, "");
    if (threshold < 0 || threshold > 1) detail::field_error(file, "threshold", "must be in [0, 1]");
    for (const RouterKind& k : kKinds) {
        if (kind != k.name) continue;
        std::unique_ptr<Router> r = k.from_json(j, file);
        r->set_threshold(threshold);
        return r;
    }
    detail::field_error(file, "kind", "unknown router kind '" + kind + "' (valid: " + kind_list() + ")");
}

std::unique_ptr<Router> load_router(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw RouterError(path + ": cannot open router file");
    std::stringstream ss;
    ss << f.rdbuf();
    json j;
    try {
        j = json::parse(ss.str());
    } catch (const json::exception& e) {
        throw RouterError(path + ": not valid JSON: " + e.what());
    }
    return router_from_json(j, path);
}

}  // namespace tandem
