// `tandem router ...`: train, calibrate, evaluate and try a Hybrid LLM router (docs/router.md).
//
//   tandem router train --data FILE --labels det|prob|trans [--model M] --out ROUTER
//                       [--kind logistic|mlp] [--hidden H] [--steps N] [--hash-bits K] [--l2 L] [--threshold T]
//   tandem router calibrate --router ROUTER --data FILE (--cloud-fraction F | --max-drop D)
//   tandem router eval --router ROUTER --data FILE --out DIR
//   tandem router decide --router ROUTER [--private] [--offline] [--signal NAME=VALUE]... [--top K] QUERY...
//   tandem router synth --out FILE [--rows N] [--seed S] [--gap G] [--offset O] [--noise X] [--hidden H] [--signals]
//
// Each prints one JSON object on its last line of stdout; errors go to stderr with exit 1
// (2 for a bad command line).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "commands.h"
#include "tandem/engine.h"
#include "tandem/router.h"
#include "tandem/router_eval.h"
#include "tandem/router_mlp.h"
#include "tandem/router_synth.h"
#include "tandem/router_train.h"

namespace tandem::cli {

using json = nlohmann::json;

static const char* kRouterUsage =
    "tandem router train --data FILE --labels det|prob|trans [--model M] --out ROUTER [--kind logistic|mlp] [--hidden H] [--steps N] [--hash-bits K] [--l2 L] [--threshold T]\n"
    "  tandem router calibrate --router ROUTER --data FILE (--cloud-fraction F | --max-drop D)\n"
    "  tandem router eval --router ROUTER --data FILE --out DIR\n"
    "  tandem router decide --router ROUTER [--private] [--offline] [--signal NAME=VALUE]... [--top K] QUERY...\n"
    "  tandem router synth --out FILE [--rows N] [--seed S] [--gap G] [--offset O] [--noise X] [--hidden H] [--signals]";

// --model: the small model's own signals for every row (mean token log-probability of the
// query, mean entropy of its first 4 greedy tokens), as the Assistant computes them at ask().
static void add_model_signals(Dataset& d, const std::string& model_path) {
    EngineParams ep;
    ep.context.n_ctx = 512;
    auto engine = Engine::load(model_path, ep);
    const Tokenizer& tok = engine->tokenizer();
    for (size_t i = 0; i < d.rows.size(); i++) {
        std::vector<int32_t> ids = tok.encode(d.rows[i].query, tok.add_bos());
        if (ids.size() > 500) ids.resize(500);
        if (ids.empty()) throw RouterError(d.file + ":" + std::to_string(d.rows[i].line) + ": field 'query': empty");
        const Engine::Signals s = engine->signals(ids, 4);
        d.rows[i].signals.query_logprob_mean = s.logprob_mean;
        d.rows[i].signals.gen_entropy = s.gen_entropy;
        if ((i + 1) % 200 == 0) std::fprintf(stderr, "signals: %zu / %zu rows\n", i + 1, d.rows.size());
    }
    std::vector<Signal> sig = {Signal::query_logprob_mean, Signal::gen_entropy};
    for (Signal s : d.signals)
        if (s == Signal::memory_coverage) sig.push_back(s);
    d.signals = sig;
}

static void need(const std::string& value, const char* flag) {
    if (value.empty()) throw UsageError{std::string("missing ") + flag};
}

static void write_text(const std::string& path, const std::string& text) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << text;
    if (!f.flush()) throw std::runtime_error(path + ": cannot write");
}

// ---- train --------------------------------------------------------------------------------

static int router_train(const Args& args) {
    std::string data, labels, model, out, kind = "logistic";
    TrainOptions opt;
    MlpOptions mlp;
    for (size_t i = 1; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--data") data = flag_value(args, i);
        else if (a == "--labels") labels = flag_value(args, i);
        else if (a == "--model") model = flag_value(args, i);
        else if (a == "--out") out = flag_value(args, i);
        else if (a == "--kind") kind = flag_value(args, i);
        else if (a == "--hidden") mlp.hidden = (int)parse_int(flag_value(args, i), a);
        else if (a == "--steps") mlp.steps = (int)parse_int(flag_value(args, i), a);
        else if (a == "--hash-bits") opt.hash_bits = (int)parse_int(flag_value(args, i), a);
        else if (a == "--l2") opt.l2 = parse_double(flag_value(args, i), a);
        else if (a == "--threshold") opt.threshold = parse_double(flag_value(args, i), a);
        else unknown_argument(a);
    }
    need(data, "--data");
    need(labels, "--labels");
    need(out, "--out");
    if (kind != "logistic" && kind != "mlp") throw UsageError{"--kind must be logistic or mlp"};
    try {
        opt.labels = parse_label_mode(labels);
    } catch (const RouterError& e) {
        throw UsageError{e.what()};
    }
    Dataset d = load_routing_jsonl(data);
    if (!model.empty()) add_model_signals(d, model);
    std::unique_ptr<Router> r;
    double t = 0;
    if (kind == "mlp") {
        std::unique_ptr<MlpRouter> m = train_mlp_router(d, opt, mlp);
        t = m->training().t, r = std::move(m);
    } else {
        std::unique_ptr<LogisticRouter> l = train_logistic_router(d, opt);
        t = l->training().t, r = std::move(l);
    }
    r->save(out);
    json sig = json::array();
    for (Signal s : r->signals()) sig.push_back(kSignalNames[(int)s]);
    std::printf("trained a %s router on %zu rows of %s (labels %s, t %.4f), saved to %s\n", kind.c_str(), d.rows.size(),
                data.c_str(), labels.c_str(), t, out.c_str());
    json j = {{"kind", kind}, {"rows", d.rows.size()}, {"labels", labels}, {"t", t}, {"signals", sig},
              {"threshold", r->threshold()}, {"out", out}};
    std::printf("%s\n", j.dump().c_str());
    return 0;
}

// ---- calibrate ----------------------------------------------------------------------------

static int router_calibrate(const Args& args) {
    std::string router, data;
    bool have_fraction = false, have_drop = false;
    double fraction = 0, drop = 0;
    for (size_t i = 1; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--router") router = flag_value(args, i);
        else if (a == "--data") data = flag_value(args, i);
        else if (a == "--cloud-fraction") fraction = parse_double(flag_value(args, i), a), have_fraction = true;
        else if (a == "--max-drop") drop = parse_double(flag_value(args, i), a), have_drop = true;
        else unknown_argument(a);
    }
    need(router, "--router");
    need(data, "--data");
    if (have_fraction == have_drop) throw UsageError{"give exactly one of --cloud-fraction F and --max-drop D"};
    if (have_fraction && !(fraction >= 0 && fraction <= 1)) throw UsageError{"--cloud-fraction must be in [0, 1]"};
    if (have_drop && !(drop >= 0)) throw UsageError{"--max-drop is a percentage >= 0"};
    std::unique_ptr<Router> r = load_router(router);
    Dataset d = load_routing_jsonl(data);
    std::vector<double> scores = router_scores(*r, d);
    Calibration c = have_fraction ? calibrate_cloud_fraction(scores, d, fraction) : calibrate_max_drop(scores, d, drop);
    r->set_threshold(c.threshold);
    r->save(router);
    std::printf("threshold %.6f: cloud fraction %.4f, quality drop %.3f%% on %s (written to %s)\n", c.threshold,
                c.cloud_fraction, c.quality_drop_pct, data.c_str(), router.c_str());
    json j = {{"threshold", c.threshold}, {"cloud_fraction", c.cloud_fraction}, {"quality_drop_pct", c.quality_drop_pct}};
    std::printf("%s\n", j.dump().c_str());
    return 0;
}

// ---- eval ---------------------------------------------------------------------------------

static int router_eval(const Args& args) {
    std::string router, data, out;
    for (size_t i = 1; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--router") router = flag_value(args, i);
        else if (a == "--data") data = flag_value(args, i);
        else if (a == "--out") out = flag_value(args, i);
        else unknown_argument(a);
    }
    need(router, "--router");
    need(data, "--data");
    need(out, "--out");
    std::unique_ptr<Router> r = load_router(router);
    Dataset d = load_routing_jsonl(data);
    EvalReport rep = evaluate_router(*r, d);
    namespace fs = std::filesystem;
    fs::create_directories(out);
    const std::string csv_path = (fs::path(out) / "curve.csv").string(), svg_path = (fs::path(out) / "curve.svg").string();
    write_text(csv_path, curve_csv(rep));
    write_text(svg_path, curve_svg(rep, r->kind() + " router on " + fs::path(data).filename().string()));
    std::printf("%zu queries: all-local quality %.4f, all-cloud %.4f\n", rep.n, rep.q_local, rep.q_cloud);
    std::printf("at threshold %.4f: cloud fraction %.4f, quality %.4f (drop %.3f%% vs all-cloud)\n", rep.threshold,
                rep.cloud_fraction, rep.quality, rep.quality_drop_pct);
    std::printf("APGR: router %.4f, random %.4f, oracle %.4f\n", rep.apgr, rep.apgr_random, rep.apgr_oracle);
    std::printf("wrote %s and %s\n", csv_path.c_str(), svg_path.c_str());
    json drops = json::object(), rdrops = json::object();
    const char* keys[3] = {"0.1", "0.2", "0.4"};
    for (int i = 0; i < 3; ++i) drops[keys[i]] = rep.drop_at_local[i], rdrops[keys[i]] = rep.random_drop_at_local[i];
    json j = {{"n", rep.n},
              {"threshold", rep.threshold},
              {"cloud_fraction", rep.cloud_fraction},
              {"quality", rep.quality},
              {"quality_drop_pct", rep.quality_drop_pct},
              {"q_local", rep.q_local},
              {"q_cloud", rep.q_cloud},
              {"apgr", rep.apgr},
              {"apgr_random", rep.apgr_random},
              {"apgr_oracle", rep.apgr_oracle},
              {"quality_drop_at_local_share", drops},
              {"random_quality_drop_at_local_share", rdrops}};
    std::printf("%s\n", j.dump().c_str());
    return 0;
}

// ---- decide -------------------------------------------------------------------------------

static int router_decide(const Args& args) {
    std::string router, query;
    RoutePolicy p;
    RouterSignals sig;
    for (size_t i = 1; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--router") router = flag_value(args, i);
        else if (a == "--private") p.private_query = true;
        else if (a == "--offline") p.offline = true;
        else if (a == "--signal") {
            const std::string& kv = flag_value(args, i);
            size_t eq = kv.find('=');
            std::string name = kv.substr(0, eq);
            double v = parse_double(eq == std::string::npos ? "" : kv.substr(eq + 1), a);
            if (name == kSignalNames[0]) sig.query_logprob_mean = v;
            else if (name == kSignalNames[1]) sig.gen_entropy = v;
            else if (name == kSignalNames[2]) sig.memory_coverage = v;
            else throw UsageError{"unknown signal '" + name + "' (query_logprob_mean, gen_entropy, memory_coverage)"};
        } else if (a == "--top") p.top_k = (size_t)std::max(0, parse_int(flag_value(args, i), a));
        else if (a.rfind("--", 0) == 0 || a == "-h") unknown_argument(a);
        else query += (query.empty() ? "" : " ") + a;
    }
    need(router, "--router");
    need(query, "QUERY");
    std::unique_ptr<Router> r = load_router(router);
    Decision d = r->decide(query, sig, p);
    json top = json::array();
    for (const Contribution& c : d.top_features) top.push_back({{"feature", c.name}, {"contribution", c.value}});
    json j = {{"route", route_name(d.route)},           {"router_route", route_name(d.router_route)},
              {"score", d.score},                       {"threshold", d.threshold},
              {"reason", override_reason_name(d.reason)}, {"top_features", top}};
    std::printf("%s\n", j.dump().c_str());
    return 0;
}

// ---- synth --------------------------------------------------------------------------------

static int router_synth(const Args& args) {
    std::string out;
    SynthOptions o;
    for (size_t i = 1; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--out") out = flag_value(args, i);
        else if (a == "--rows") o.n_rows = (int)parse_int(flag_value(args, i), a);
        else if (a == "--seed") o.seed = (uint64_t)parse_int(flag_value(args, i), a);
        else if (a == "--gap") o.gap = parse_double(flag_value(args, i), a);
        else if (a == "--noise") o.noise = parse_double(flag_value(args, i), a);
        else if (a == "--offset") o.offset = parse_double(flag_value(args, i), a);
        else if (a == "--hidden") o.hidden = parse_double(flag_value(args, i), a);
        else if (a == "--signals") o.with_signals = true;
        else unknown_argument(a);
    }
    need(out, "--out");
    Dataset d = make_synthetic_routing_data(o);
    write_text(out, dataset_to_jsonl(d));
    json j = {{"rows", d.rows.size()}, {"out", out}};
    std::printf("%s\n", j.dump().c_str());
    return 0;
}

std::string help_router() {
    const TrainOptions t;
    const MlpOptions m;
    const SynthOptions y;
    const RoutePolicy p;
    char buf[2048];
    std::snprintf(buf, sizeof buf,
                  "usage:\n  %s\n\n"
                  "Trains, calibrates, evaluates and tries a Hybrid LLM router (docs/router.md). Each prints one\n"
                  "JSON object on its last line of stdout.\n\n"
                  "train defaults:     --kind logistic  --hidden %d (mlp)  --steps %d (mlp)  --hash-bits %d  --l2 %g\n"
                  "                    --threshold %g; --model M adds the small model's own signals\n"
                  "decide defaults:    --top %zu features; --signal NAME=VALUE for query_logprob_mean, gen_entropy,\n"
                  "                    memory_coverage (default: not measured)\n"
                  "synth defaults:     --rows %d  --seed %llu  --gap %g  --offset %g  --noise %g  --hidden %g\n"
                  "  -h, --help        this text (also after any router subcommand)\n",
                  kRouterUsage, m.hidden, m.steps, t.hash_bits, t.l2, t.threshold, p.top_k, y.n_rows,
                  (unsigned long long)y.seed, y.gap, y.offset, y.noise, y.hidden);
    return buf;
}

int cmd_router(const Args& args) {
    if (args.empty()) throw UsageError{"missing subcommand (train, calibrate, eval, decide, synth)"};
    const std::string& sub = args[0];
    if (sub == "-h" || sub == "--help") throw HelpRequested{};
    if (sub == "train") return router_train(args);
    if (sub == "calibrate") return router_calibrate(args);
    if (sub == "eval") return router_eval(args);
    if (sub == "decide") return router_decide(args);
    if (sub == "synth") return router_synth(args);
    throw UsageError{"unknown subcommand '" + sub + "' (train, calibrate, eval, decide, synth)"};
}

}  // namespace tandem::cli
