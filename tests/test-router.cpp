// Tests of the router library: features, labels (hand-computed), training on data with known
// structure, calibration on held-out data, router files, policies and the cloud budget.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <nlohmann/json.hpp>
#include <thread>

#include "tandem/router.h"
#include "tandem/router_eval.h"
#include "tandem/router_mlp.h"
#include "tandem/router_synth.h"
#include "tandem/router_train.h"
#include "test_util.h"

using namespace tandem;
using tandem_test::TempDir;

// Message of the RouterError `fn` throws ("" if it throws none).
template <class F>
static std::string error_of(F fn) {
    try {
        fn();
    } catch (const RouterError& e) {
        return e.what();
    }
    return "";
}

static bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// ---- features -----------------------------------------------------------------------------

TEST_CASE("fnv1a32 matches the published test vectors") {
    CHECK(fnv1a32("") == 0x811c9dc5u);
    CHECK(fnv1a32("a") == 0xe40c292cu);
    CHECK(fnv1a32("foobar") == 0xbf9cf968u);
}

TEST_CASE("router_words lower-cases and splits Unicode text safely") {
    using V = std::vector<std::string>;
    CHECK(router_words("Hello, WORLD!  don't 'quote' it's") == V{"hello", "world", "don't", "quote", "it's"});
    CHECK(router_words("H\xC3\xA9llo \xC3\x87" "a va") == V{"h\xC3\xA9llo", "\xC3\xA7" "a", "va"});  // Héllo Ça
    CHECK(router_words("\xD0\x9F\xD0\xA0\xD0\x98 \xCE\x91\xCE\xB2") ==
          V{"\xD0\xBF\xD1\x80\xD0\xB8", "\xCE\xB1\xCE\xB2"});  // ПРИ Αβ -> при αβ
    CHECK(router_words("a\xE2\x80\x94" "b\xE2\x80\x9C" "c") == V{"a", "b", "c"});  // em dash, curly quote
    CHECK(router_words("\xE6\x9D\xB1\xE4\xBA\xAC" "x") == V{"\xE6\x9D\xB1", "\xE4\xBA\xAC", "x"});  // 東京 one each
    CHECK(router_words("ab\xFF" "cd\xE6\x9D") == V{"ab", "cd"});  // invalid and truncated bytes separate
    CHECK(router_words("\xC0\xAF" "x") == V{"x"});                 // overlong encoding rejected
    CHECK(router_words("").empty());
}

TEST_CASE("extract_features hashes unigrams and bigrams into buckets and measures length") {
    FeatureConfig cfg;
    cfg.hash_bits = 12;
    FeatureVector f = extract_features(cfg, "Hello world hello", {}, true);
    const uint32_t mask = 4095;
    std::vector<uint32_t> want = {fnv1a32("hello") & mask, fnv1a32("world") & mask, fnv1a32("hello world") & mask,
                                  fnv1a32("world hello") & mask};
    std::sort(want.begin(), want.end());
    want.erase(std::unique(want.begin(), want.end()), want.end());
    CHECK(f.buckets == want);
    REQUIRE(f.names.size() == f.buckets.size());
    CHECK(std::count(f.names.begin(), f.names.end(), "bi:hello world") == 1);
    REQUIRE(f.dense.size() == 2);
    CHECK(f.dense[0] == doctest::Approx(std::log1p(17.0)));
    CHECK(f.dense[1] == doctest::Approx(std::log1p(3.0)));
    cfg.bigrams = false;
    CHECK(extract_features(cfg, "Hello world hello", {}, false).buckets.size() == 2);
}

TEST_CASE("a signal the router was trained with must be supplied") {
    FeatureConfig cfg;
    cfg.signals = {Signal::memory_coverage};
    CHECK(contains(error_of([&] { extract_features(cfg, "q", {}, false); }), "memory_coverage"));
    RouterSignals s;
    s.memory_coverage = NAN;
    CHECK(contains(error_of([&] { extract_features(cfg, "q", s, false); }), "not finite"));
    s.memory_coverage = 3.5;
    CHECK(extract_features(cfg, "q", s, false).dense.back() == 3.5);
}

// ---- labels -------------------------------------------------------------------------------

static TrainingRow row(std::vector<double> small, std::vector<double> large) {
    TrainingRow r;
    r.query = "q";
    r.small_scores = std::move(small);
    r.large_scores = std::move(large);
    return r;
}

TEST_CASE("det, prob and trans labels on a hand-computed example") {
    TrainingRow r = row({0.25, 0.75}, {0.5, 0.5, 1.0});
    CHECK(label_det(r) == 0.0);                       // 0.25 >= 0.5 is false
    CHECK(label_prob(r) == doctest::Approx(2.0 / 6));  // only 0.75 beats the two 0.5s
    CHECK(label_trans(r, 0.0) == doctest::Approx(2.0 / 6));
    CHECK(label_trans(r, 0.25) == doctest::Approx(5.0 / 6));  // 0.25 >= 0.25 (x2), 0.75 >= all
    CHECK(label_trans(r, 0.75) == 1.0);
    CHECK(label_det(row({0.5}, {0.5})) == 1.0);  // ties count for the small model
    CHECK(label_det(row({0.75, 0.0}, {0.5, 1.0})) == 1.0);  // first samples only
}

TEST_CASE("mean pairwise difference and the trans grid search") {
    CHECK(mean_pairwise_difference({}) == 0.0);
    CHECK(mean_pairwise_difference({0, 1}) == doctest::Approx(0.5));
    CHECK(mean_pairwise_difference({0, 0.5, 1}) == doctest::Approx(4.0 / 9));
    CHECK(mean_pairwise_difference({1, 0, 0.5}) == doctest::Approx(4.0 / 9));
    // y_A(t) = [t >= 1]; y_B(t) = ([t >= 0.5] + [t >= 2]) / 2; D(t) = |y_A - y_B| / 2 peaks at 0.25
    // first at t = 0.5 (grid step R/200 with R = 2).
    std::vector<TrainingRow> rows = {row({0}, {1}), row({0, 0}, {0.5, 2})};
    CHECK(choose_trans_t(rows) == 0.5);
    double t = -1;
    std::vector<double> y = make_labels(rows, LabelMode::trans, &t);
    CHECK(t == 0.5);
    CHECK(y == std::vector<double>{0.0, 0.5});
    CHECK(make_labels(rows, LabelMode::prob, &t) == std::vector<double>{0.0, 0.0});
    CHECK(t == 0.0);
    // Equal models: R = 0, t = 0.
    CHECK(choose_trans_t({row({1}, {1})}) == 0.0);
}

TEST_CASE("label modes parse by name") {
    CHECK(parse_label_mode("trans") == LabelMode::trans);
    CHECK(contains(error_of([] { parse_label_mode("soft"); }), "det, prob, trans"));
}

// ---- JSONL --------------------------------------------------------------------------------

TEST_CASE("training JSONL: rows, blank lines, signals") {
    Dataset d = parse_routing_jsonl(
        "{\"query\":\"a b\",\"small_scores\":[1,0.5],\"large_scores\":[1],\"memory_coverage\":2,\"id\":7}\n\n"
        "{\"query\":\"c\",\"small_scores\":[0],\"large_scores\":[1,1],\"memory_coverage\":-1}\r\n",
        "d.jsonl");
    REQUIRE(d.rows.size() == 2);
    CHECK(d.rows[1].line == 3);
    CHECK(d.rows[0].small_scores == std::vector<double>{1, 0.5});
    CHECK(d.signals == std::vector<Signal>{Signal::memory_coverage});
    CHECK(*d.rows[1].signals.memory_coverage == -1);
    Dataset back = parse_routing_jsonl(dataset_to_jsonl(d), "back");
    CHECK(back.rows[0].query == "a b");
    CHECK(back.signals == d.signals);
}

TEST_CASE("bad training JSONL lines name the file, the line and the field") {
    const std::string ok = "{\"query\":\"q\",\"small_scores\":[1],\"large_scores\":[1]}\n";
    auto err = [](const std::string& text) { return error_of([&] { parse_routing_jsonl(text, "f.jsonl"); }); };
    CHECK(contains(err(ok + "{\"query\": \n"), "f.jsonl:2: invalid JSON"));
    CHECK(contains(err(ok + ok + "{\"query\":\"q\",\"large_scores\":[1]}"), "f.jsonl:3: field 'small_scores': missing"));
    CHECK(contains(err("{\"query\":3,\"small_scores\":[1],\"large_scores\":[1]}"), "f.jsonl:1: field 'query'"));
    CHECK(contains(err("{\"query\":\"q\",\"small_scores\":[],\"large_scores\":[1]}"), "field 'small_scores': expected a non-empty"));
    CHECK(contains(err("{\"query\":\"q\",\"small_scores\":[1],\"large_scores\":[\"x\"]}"), "field 'large_scores'"));
    CHECK(contains(err("{\"query\":\"q\",\"small_scores\":[1],\"large_scores\":[1],\"gen_entropy\":\"hi\"}"),
                   "f.jsonl:1: field 'gen_entropy'"));
    CHECK(contains(err(ok + "{\"query\":\"q\",\"small_scores\":[1],\"large_scores\":[1],\"gen_entropy\":1}"),
                   "f.jsonl:2: field 'gen_entropy': present, but the first row"));
    CHECK(contains(err("[1,2]"), "f.jsonl:1: expected a JSON object"));
    CHECK(contains(err(ok + "{\"query\":\"q\",\"small_scores\":[1],\"large_scores\":[1e400]}"), "f.jsonl:2: invalid JSON"));
    CHECK(contains(err("\n \n"), "f.jsonl: no rows"));
    CHECK(contains(error_of([] { load_routing_jsonl("/nonexistent/x.jsonl"); }), "/nonexistent/x.jsonl: cannot open"));
}

// ---- training on data with known structure ------------------------------------------------

struct Trained {
    Dataset train, valid, test;
    std::unique_ptr<LogisticRouter> router;
};

static const Trained& trained(LabelMode mode) {
    static std::unique_ptr<Trained> cache[3];
    std::unique_ptr<Trained>& t = cache[(int)mode];
    if (!t) {
        t = std::make_unique<Trained>();
        SynthOptions o;
        o.gap = 0.3;
        o.seed = 11, o.n_rows = 3000;
        t->train = make_synthetic_routing_data(o);
        o.seed = 12, o.n_rows = 1500;
        t->valid = make_synthetic_routing_data(o);
        o.seed = 13, o.n_rows = 1500;
        t->test = make_synthetic_routing_data(o);
        TrainOptions opt;
        opt.labels = mode;
        t->router = train_logistic_router(t->train, opt);
    }
    return *t;
}

TEST_CASE("the router recovers the synthetic structure: hard, easy words and the hard bigram") {
    for (LabelMode mode : {LabelMode::det, LabelMode::prob, LabelMode::trans}) {
        CAPTURE(label_mode_name(mode));
        const LogisticRouter& r = *trained(mode).router;
        for (const std::string& w : kSynthHardWords) {
            CAPTURE(w);
            CHECK(r.ngram_weight(w) < -0.3);
        }
        for (const std::string& w : kSynthEasyWords) {
            CAPTURE(w);
            CHECK(r.ngram_weight(w) > 0.3);
        }
        CHECK(r.ngram_weight(kSynthHardBigram) < -0.3);
        CHECK(r.ngram_weight(kSynthHardBigram) < r.ngram_weight("edge") - 0.2);
        CHECK(r.ngram_weight(kSynthHardBigram) < r.ngram_weight("case") - 0.2);
        CHECK(std::fabs(r.ngram_weight("garden")) < 0.3);  // filler: no effect built in
    }
    CHECK(trained(LabelMode::trans).router->training().t > 0.0);
}

TEST_CASE("training is deterministic") {
    SynthOptions o;
    o.n_rows = 300;
    TrainOptions opt;
    opt.labels = LabelMode::prob;
    auto a = train_logistic_router(make_synthetic_routing_data(o), opt);
    auto b = train_logistic_router(make_synthetic_routing_data(o), opt);
    CHECK(a->bias() == b->bias());
    CHECK(a->ngram_weight("prove") == b->ngram_weight("prove"));
    CHECK(a->score("Please prove this theorem", {}) == b->score("Please prove this theorem", {}));
}

TEST_CASE("the router beats random by a clear margin on held-out data") {
    for (LabelMode mode : {LabelMode::det, LabelMode::prob, LabelMode::trans}) {
        CAPTURE(label_mode_name(mode));
        const Trained& t = trained(mode);
        EvalReport rep = evaluate_router(*t.router, t.test);
        CHECK(rep.apgr_random == doctest::Approx(0.5).epsilon(0.1));
        CHECK(rep.apgr > rep.apgr_random + 0.2);
        CHECK(rep.apgr_oracle >= rep.apgr);
        for (int i = 0; i < 3; ++i) CHECK(rep.drop_at_local[i] < 0.6 * rep.random_drop_at_local[i]);
        REQUIRE(rep.curve.size() == 101);
        CHECK(rep.curve.front().router == doctest::Approx(rep.q_local));
        CHECK(rep.curve.back().router == doctest::Approx(rep.q_cloud));
    }
}

TEST_CASE("calibration on validation data hits the target cloud fraction on held-out data") {
    const Trained& t = trained(LabelMode::trans);
    std::vector<double> valid_scores = router_scores(*t.router, t.valid);
    std::vector<double> test_scores = router_scores(*t.router, t.test);
    for (double target : {0.1, 0.3, 0.5, 0.8}) {
        CAPTURE(target);
        Calibration c = calibrate_cloud_fraction(valid_scores, t.valid, target);
        CHECK(c.cloud_fraction == doctest::Approx(target).epsilon(0.0).scale(0).epsilon(0.01));
        double held_out = 0;
        quality_at_threshold(test_scores, t.test, c.threshold, &held_out);
        CHECK(std::fabs(held_out - target) < 0.04);
    }
    CHECK(calibrate_cloud_fraction(valid_scores, t.valid, 0.0).cloud_fraction == 0.0);
    CHECK(calibrate_cloud_fraction(valid_scores, t.valid, 1.0).cloud_fraction == 1.0);
    for (double drop : {1.0, 5.0}) {
        Calibration c = calibrate_max_drop(valid_scores, t.valid, drop);
        CHECK(c.quality_drop_pct <= drop + 1e-9);
        Calibration looser = calibrate_cloud_fraction(valid_scores, t.valid, c.cloud_fraction - 0.02);
        CHECK(looser.quality_drop_pct > drop);  // the smallest cloud share that meets the bound
    }
    CHECK(contains(error_of([&] { calibrate_cloud_fraction(valid_scores, t.valid, 1.5); }), "cloud fraction"));
}

TEST_CASE("calibration never splits tied scores") {
    Dataset d;
    d.file = "tie";
    for (int i = 0; i < 4; ++i) d.rows.push_back(row({0}, {1}));
    std::vector<double> s = {0.2, 0.5, 0.5, 0.9};
    Calibration c = calibrate_cloud_fraction(s, d, 0.5);  // 0.5 would split the tie
    CHECK((c.cloud_fraction == 0.25 || c.cloud_fraction == 0.75));
    CHECK(c.threshold > 0.2);
}

TEST_CASE("curve CSV and SVG") {
    const Trained& t = trained(LabelMode::det);
    EvalReport rep = evaluate_router(*t.router, t.test);
    std::string csv = curve_csv(rep);
    CHECK(std::count(csv.begin(), csv.end(), '\n') == 102);
    CHECK(csv.rfind("cloud_share,router,random,oracle,all_local,all_cloud\n0.00,", 0) == 0);
    std::string svg = curve_svg(rep, "a <title>");
    CHECK(svg.rfind("<svg", 0) == 0);
    CHECK(contains(svg, "a &lt;title&gt;"));
    size_t n = 0;
    for (size_t p = svg.find("<polyline"); p != std::string::npos; p = svg.find("<polyline", p + 1)) ++n;
    CHECK(n == 5);
}

// ---- signals ------------------------------------------------------------------------------

TEST_CASE("a router trained with signals uses them and requires them") {
    SynthOptions o;
    o.n_rows = 1500;
    o.with_signals = true;
    Dataset d = make_synthetic_routing_data(o);
    TrainOptions opt;
    opt.labels = LabelMode::prob;
    auto r = train_logistic_router(d, opt);
    REQUIRE(r->config().signals == std::vector<Signal>{Signal::gen_entropy, Signal::memory_coverage});
    CHECK(r->dense_weight(3) > 0.3);                  // memory_coverage: informative, easier
    CHECK(std::fabs(r->dense_weight(2)) < 0.15);      // gen_entropy: noise
    CHECK(contains(error_of([&] { r->score("hello", {}); }), "gen_entropy"));
    RouterSignals s;
    s.gen_entropy = 1.0;
    s.memory_coverage = 4.0;
    double high = r->score("write a report", s);
    s.memory_coverage = -1.0;
    CHECK(r->score("write a report", s) < high);
    TempDir dir;
    r->save(dir.file("r.json"));
    CHECK(load_router(dir.file("r.json"))->score("write a report", s) == r->score("write a report", s));
}

// ---- router files -------------------------------------------------------------------------

TEST_CASE("save/load round trip keeps every score, the threshold, labels and t") {
    const Trained& t = trained(LabelMode::trans);
    TempDir dir;
    t.router->save(dir.file("r0.json"));
    std::unique_ptr<Router> mid = load_router(dir.file("r0.json"));
    mid->set_threshold(0.37);
    mid->save(dir.file("r.json"));
    std::unique_ptr<Router> back = load_router(dir.file("r.json"));
    REQUIRE(back->kind() == "logistic");
    const auto& lr = dynamic_cast<const LogisticRouter&>(*back);
    CHECK(lr.threshold() == 0.37);
    CHECK(lr.training().labels == LabelMode::trans);
    CHECK(lr.training().t == t.router->training().t);
    for (const TrainingRow& r : t.test.rows) REQUIRE(lr.score(r.query, {}) == t.router->score(r.query, {}));
    back->save(dir.file("r2.json"));
    CHECK(tandem_test::read_file(dir.file("r.json")) == tandem_test::read_file(dir.file("r2.json")));
    nlohmann::json j = nlohmann::json::parse(tandem_test::read_file(dir.file("r.json")));
    CHECK(j["format"] == "tandem-router");
    CHECK(j["version"] == kRouterFormatVersion);
    CHECK(j["label_mode"] == "trans");
    CHECK(j["features"]["hash"] == "fnv1a32");
}

TEST_CASE("bad or incompatible router files give errors naming the file and the field") {
    const Trained& t = trained(LabelMode::det);
    TempDir dir;
    const std::string path = dir.file("r.json");
    t.router->save(path);
    const nlohmann::json good = nlohmann::json::parse(tandem_test::read_file(path));
    auto err_with = [&](auto edit) {
        nlohmann::json j = good;
        edit(j);
        tandem_test::write_file(path, j.dump());
        return error_of([&] { load_router(path); });
    };
    using J = nlohmann::json;
    CHECK(contains(err_with([](J& j) { j["version"] = 2; }), path + ": field 'version': unsupported format version 2"));
    CHECK(contains(err_with([](J& j) { j["format"] = "other"; }), "field 'format'"));
    CHECK(contains(err_with([](J& j) { j["kind"] = "mlp9"; }), "field 'kind': unknown router kind 'mlp9'"));
    CHECK(contains(err_with([](J& j) { j["threshold"] = 1.5; }), "field 'threshold'"));
    CHECK(contains(err_with([](J& j) { j["features"]["hash_bits"] = 40; }), "field 'features.hash_bits'"));
    CHECK(contains(err_with([](J& j) { j["features"]["hash"] = "murmur3"; }), "field 'features.hash'"));
    CHECK(contains(err_with([](J& j) { j["features"]["tokenizer"] = "v0"; }), "field 'features.tokenizer'"));
    CHECK(contains(err_with([](J& j) { j["features"]["signals"] = {"gen_entropy"}; }), "field 'features.dense'"));
    CHECK(contains(err_with([](J& j) { j["features"]["signals"] = {"colour"}; }), "field 'features.signals'"));
    CHECK(contains(err_with([](J& j) { j["model"].erase("bias"); }), "field 'model.bias': missing"));
    CHECK(contains(err_with([](J& j) { j["model"]["bucket_weights"].push_back({1u << 20, 1.0}); }),
                   "field 'model.bucket_weights'"));
    CHECK(contains(err_with([](J& j) { j["model"]["dense_weights"] = {1}; }), "field 'model.dense_weights'"));
    CHECK(contains(err_with([](J& j) { j["label_mode"] = "soft"; }), "field 'label_mode'"));
    CHECK(contains(err_with([](J& j) { j.erase("t"); }), "field 't': missing"));
    tandem_test::write_file(path, "{not json");
    CHECK(contains(error_of([&] { load_router(path); }), path + ": not valid JSON"));
    CHECK(contains(error_of([&] { load_router(dir.file("missing.json")); }), "missing.json: cannot open"));
}

// ---- registry, baselines, threshold -------------------------------------------------------

TEST_CASE("routers are registered by name; baselines") {
    CHECK(make_router("always-local")->score("anything", {}) == 1.0);
    CHECK(make_router("always-cloud")->route("anything", {}) == Route::cloud);
    std::unique_ptr<Router> rnd = make_router("random");
    double s = rnd->score("q1", {});
    CHECK(s >= 0.0);
    CHECK(s < 1.0);
    CHECK(rnd->score("q1", {}) == s);
    CHECK(RandomRouter(1).score("q1", {}) != s);
    CHECK(contains(error_of([] { make_router("nope"); }), "logistic, mlp, always-local, always-cloud, random"));
    CHECK(contains(error_of([] { make_router("logistic"); }), "must be trained"));
    TempDir dir;
    RandomRouter r7(7);
    r7.set_threshold(0.25);
    r7.save(dir.file("rnd.json"));
    auto back = load_router(dir.file("rnd.json"));
    CHECK(back->kind() == "random");
    CHECK(back->threshold() == 0.25);
    CHECK(back->score("abc", {}) == r7.score("abc", {}));
}

TEST_CASE("the threshold is a run-time knob in [0, 1]") {
    AlwaysCloudRouter r;
    CHECK(r.route("q", {}) == Route::cloud);
    r.set_threshold(0.0);
    CHECK(r.route("q", {}) == Route::local);
    CHECK(contains(error_of([&] { r.set_threshold(1.5); }), "threshold"));
    CHECK(contains(error_of([&] { r.set_threshold(NAN); }), "threshold"));
}

// ---- decisions and policies ---------------------------------------------------------------

TEST_CASE("decide reports score, threshold and the top contributing features") {
    const LogisticRouter& r = *trained(LabelMode::prob).router;
    RoutePolicy p;
    p.top_k = 3;
    Decision d = r.decide("Please PROVE this theorem about the garden", {}, p);
    CHECK(d.route == Route::cloud);
    CHECK(d.reason == OverrideReason::none);
    CHECK(d.threshold == r.threshold());
    CHECK(d.score == r.score("Please PROVE this theorem about the garden", {}));
    REQUIRE(d.top_features.size() == 3);
    std::vector<std::string> names;
    for (const Contribution& c : d.top_features) names.push_back(c.name);
    CHECK(std::count(names.begin(), names.end(), "uni:prove") == 1);
    CHECK(std::count(names.begin(), names.end(), "uni:theorem") == 1);
    for (const Contribution& c : d.top_features)
        if (c.name == "uni:prove") CHECK(c.value < 0);
    CHECK(std::fabs(d.top_features[0].value) >= std::fabs(d.top_features[1].value));
    Decision easy = r.decide("hello, thanks for the note", {}, p);
    CHECK(easy.route == Route::local);
}

TEST_CASE("policies force local: private always, offline, and a spent budget") {
    AlwaysCloudRouter r;
    RoutePolicy p;
    p.private_query = true;
    p.offline = true;
    Decision d = r.decide("q", {}, p);
    CHECK(d.route == Route::local);
    CHECK(d.router_route == Route::cloud);
    CHECK(d.reason == OverrideReason::private_query);
    CHECK(std::string(override_reason_name(d.reason)) == "private");
    p.private_query = false;
    CHECK(r.decide("q", {}, p).reason == OverrideReason::offline);
    p.offline = false;
    CHECK(r.decide("q", {}, p).route == Route::cloud);
    // Private wins even when the router would keep it local anyway.
    p.private_query = true;
    CHECK(AlwaysLocalRouter().decide("q", {}, p).reason == OverrideReason::private_query);
}

TEST_CASE("cloud budget: calls per hour and tokens per day, with an injected clock") {
    double now = 1000.0;
    CloudBudget b({2, 1000}, [&] { return now; });
    AlwaysCloudRouter r;
    RoutePolicy p;
    p.budget = &b;
    p.expected_tokens = 100;
    CHECK(r.decide("q", {}, p).route == Route::cloud);
    CHECK(b.calls_last_hour() == 0);  // decide never records
    b.record(400);
    now += 10;
    b.record(400);
    Decision d = r.decide("q", {}, p);
    CHECK(d.route == Route::local);
    CHECK(d.reason == OverrideReason::budget_calls);
    now += 3595;  // the first call (3605 s old) left the hour; the second is 3595 s old
    CHECK(b.calls_last_hour() == 1);
    CHECK(b.check(100) == OverrideReason::none);          // 800 + 100 <= 1000
    CHECK(b.check(201) == OverrideReason::budget_tokens);  // 800 + 201 > 1000
    p.expected_tokens = 300;
    CHECK(r.decide("q", {}, p).reason == OverrideReason::budget_tokens);
    now += 86400;  // a day later everything has expired
    CHECK(b.tokens_last_day() == 0);
    CHECK(r.decide("q", {}, p).route == Route::cloud);
    // The budget is not consulted when the router already says local.
    CloudBudget none({0, 0}, [&] { return now; });
    p.budget = &none;
    CHECK(AlwaysLocalRouter().decide("q", {}, p).reason == OverrideReason::none);
    CHECK(r.decide("q", {}, p).reason == OverrideReason::budget_calls);
    CloudBudget unlimited({-1, -1}, [&] { return now; });
    for (int i = 0; i < 100; ++i) unlimited.record(1000000);
    CHECK(unlimited.check(1000000) == OverrideReason::none);
}

TEST_CASE("decide and set_threshold may run on different threads; the budget is shared safely") {
    const LogisticRouter& r = *trained(LabelMode::det).router;
    std::unique_ptr<Router> own = make_router("random");
    own->set_threshold(0.75);
    CloudBudget budget({1000000, -1});
    std::atomic<int> bad{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            RoutePolicy p;
            p.budget = &budget;
            p.top_k = 2;
            for (int i = 0; i < 300; ++i) {
                Decision d = r.decide(trained(LabelMode::det).test.rows[(size_t)(t * 300 + i)].query, {}, p);
                if (!(d.score >= 0 && d.score <= 1)) ++bad;
                Decision e = own->decide("q" + std::to_string(i), {}, p);
                if (e.threshold != 0.25 && e.threshold != 0.75) ++bad;
                if (e.route == Route::cloud) budget.record(10);
            }
        });
    }
    for (int i = 0; i < 2000; ++i) own->set_threshold(i % 2 ? 0.25 : 0.75);
    for (std::thread& th : threads) th.join();
    CHECK(bad == 0);
    CHECK(budget.calls_last_hour() > 0);
    CHECK(budget.tokens_last_day() == 10 * budget.calls_last_hour());
}

// ---- the small MLP router -----------------------------------------------------------------

TEST_CASE("the MLP router learns the structure, round-trips through its file and explains by occlusion") {
    const Trained& t = trained(LabelMode::trans);
    TrainOptions opt;
    opt.labels = LabelMode::trans;
    opt.hash_bits = 14;
    MlpOptions mo;
    mo.steps = 200;
    std::unique_ptr<MlpRouter> r = train_mlp_router(t.train, opt, mo);
    CHECK(r->training().t == t.router->training().t);
    EvalReport rep = evaluate_router(*r, t.test);
    CHECK(rep.apgr > rep.apgr_random + 0.2);
    // Deterministic.
    std::unique_ptr<MlpRouter> again = train_mlp_router(t.train, opt, mo);
    CHECK(again->score("prove the theorem", {}) == r->score("prove the theorem", {}));
    // Hard words lower the score; the explanation names them with negative contributions.
    CHECK(r->score("please prove this theorem", {}) < r->score("please write this note", {}));
    RoutePolicy p;
    p.top_k = 4;
    Decision d = r->decide("please prove this theorem", {}, p);
    REQUIRE(!d.top_features.empty());
    bool saw_prove = false;
    for (const Contribution& c : d.top_features)
        if (c.name == "uni:prove") {
            saw_prove = true;
            CHECK(c.value < 0);
        }
    CHECK(saw_prove);
    // File round trip, and field errors.
    TempDir dir;
    r->set_threshold(0.42);
    r->save(dir.file("m.json"));
    std::unique_ptr<Router> back = load_router(dir.file("m.json"));
    REQUIRE(back->kind() == "mlp");
    CHECK(back->threshold() == 0.42);
    for (size_t i = 0; i < 200; ++i) REQUIRE(back->score(t.test.rows[i].query, {}) == r->score(t.test.rows[i].query, {}));
    nlohmann::json j = nlohmann::json::parse(tandem_test::read_file(dir.file("m.json")));
    j["model"]["bucket_weights"][0][1] = {1.0, 2.0};
    tandem_test::write_file(dir.file("bad.json"), j.dump());
    CHECK(contains(error_of([&] { load_router(dir.file("bad.json")); }), "bad.json: field 'model.bucket_weights'"));
    j["model"]["hidden"] = 0;
    tandem_test::write_file(dir.file("bad.json"), j.dump());
    CHECK(contains(error_of([&] { load_router(dir.file("bad.json")); }), "field 'model.hidden'"));
}
