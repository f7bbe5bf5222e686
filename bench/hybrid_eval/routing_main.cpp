// hybrid-routing: issue 8's routing half (Hybrid LLM with the demo model pair).
//
//   hybrid-routing data   --out DIR [--quick] [--train N] [--calib N] [--test N] [--samples K]
//                         [--max-tokens T] [--workers W] [--threads T] [--seed S] [--corpus F]
//                         [--small M] [--large M]
//
// Defaults: 200 train, 80 calibration and 120 test queries, 4 samples per model of at most 32
// tokens, 2 workers of 1 thread. --quick: 16/8/12 queries, 2 samples.
//   hybrid-routing report --data DIR --out DIR [--resamples R]
//   hybrid-routing drafts [--corpus F]     (speeches and usable drafts per split, as JSON)
//
// `data` writes DIR/routing-{train,calib,test}.jsonl (routing_data.h's format; `tandem router
// train --data` reads them as they are) and DIR/routing-data.json (options, sizes, times).
// `report` trains the det/prob/trans routers on train, calibrates on calib, evaluates on test,
// and writes DIR/routing-tables.md, DIR/routing-report.json, DIR/routing-curve-<judge>.svg
// (all three routers) and DIR/routing-routers/<judge>-<labels>.json. The last stdout line of each is a
// JSON object.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "drafts.h"
#include "routing_collect.h"
#include "routing_report.h"

using namespace tandem;
using namespace tandem::eval;
using Clock = std::chrono::steady_clock;

static double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct UsageError {
    std::string what;
};

static const char* kUsage =
    "usage: hybrid-routing data --out DIR [--quick] [--train N] [--calib N] [--test N] [--samples K]\n"
    "                           [--max-tokens T] [--workers W] [--threads T] [--seed S] [--corpus F]\n"
    "                           [--small M] [--large M]\n"
    "       hybrid-routing report --data DIR --out DIR [--resamples R]\n"
    "       hybrid-routing drafts [--corpus F]\n";

// ---- arguments -----------------------------------------------------------------------------------

struct Args {
    std::vector<std::string> v;
    size_t i = 0;
    bool more() const { return i < v.size(); }
    std::string next(const std::string& flag) {
        if (i >= v.size()) throw UsageError{flag + " needs a value"};
        return v[i++];
    }
};

static long to_int(const std::string& flag, const std::string& s, long lo, long hi) {
    char* end = nullptr;
    errno = 0;
    const long x = std::strtol(s.c_str(), &end, 10);
    if (s.empty() || *end || errno || x < lo || x > hi)
        throw UsageError{flag + ": expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got '" + s + "'"};
    return x;
}

static void make_dir(const std::string& d) {
    if (mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) throw std::runtime_error(d + ": cannot create directory: " + std::strerror(errno));
}

static void write_text(const std::string& path, const std::string& text) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << text;
    if (!f) throw std::runtime_error(path + ": cannot write");
}

// The memory half's drafts (bench-hybrid-memory): >= 6 sentences before the cut, the last
// <= 700 characters as the prefix, a truth of 30..280 characters (not "Thank you.").
static DraftOptions routing_draft_options() {
    DraftOptions d;
    d.max_prefix_chars = 700;
    d.min_truth_chars = 30;
    return d;
}
constexpr size_t kMaxTruthChars = 280;
constexpr uint64_t kDefaultSeed = 8;

// ---- drafts (how many there are) ---------------------------------------------------------------------

static int cmd_drafts(Args& a) {
    std::string corpus = TANDEM_SHARED_DIR "/corpus/ungd.jsonl.xz";
    while (a.more()) {
        const std::string f = a.next("");
        if (f == "--corpus") corpus = a.next(f);
        else throw UsageError{"unknown option '" + f + "'"};
    }
    const std::vector<Speech> speeches = load_speeches(corpus, 2019, 2022);
    nlohmann::json out;
    for (const SplitSpec& spec : default_splits(1 << 30, 1 << 30, 1 << 30)) {
        int n_speeches = 0;
        for (const Speech& s : speeches) n_speeches += s.year >= spec.min_year && s.year <= spec.max_year;
        out[spec.name] = {{"years", {spec.min_year, spec.max_year}}, {"speeches", n_speeches},
                          {"usable_drafts", split_drafts(speeches, spec, routing_draft_options(), kMaxTruthChars, kDefaultSeed).size()}};
    }
    std::printf("%s\n", out.dump().c_str());
    return 0;
}

// ---- data ------------------------------------------------------------------------------------------

static int cmd_data(Args& a) {
    std::string out, corpus = TANDEM_SHARED_DIR "/corpus/ungd.jsonl.xz";
    std::string small_path = TANDEM_DEMO_CLIENT;  // bench/demo_pair: the speeches up to 2005
    std::string large_path = TANDEM_SHARED_DIR "/models/tandem-demo-cloud-q8_0.gguf";
    // Full run: about 20 minutes on the shared 2-core development VM (docs/evaluation.md ("Routing")).
    int n_train = 200, n_calib = 80, n_test = 120, workers = 2, threads = 1;
    CollectOptions co;
    co.sample.samples = 4;
    co.sample.max_tokens = 32;
    bool quick = false;
    while (a.more()) {
        const std::string f = a.next("");
        if (f == "--out") out = a.next(f);
        else if (f == "--quick") quick = true;
        else if (f == "--train") n_train = (int)to_int(f, a.next(f), 1, 100000);
        else if (f == "--calib") n_calib = (int)to_int(f, a.next(f), 1, 100000);
        else if (f == "--test") n_test = (int)to_int(f, a.next(f), 1, 100000);
        else if (f == "--samples") co.sample.samples = (int)to_int(f, a.next(f), 1, 64);
        else if (f == "--max-tokens") co.sample.max_tokens = (int)to_int(f, a.next(f), 1, 512);
        else if (f == "--workers") workers = (int)to_int(f, a.next(f), 1, 64);
        else if (f == "--threads") threads = (int)to_int(f, a.next(f), 1, 256);
        else if (f == "--seed") co.seed = (uint64_t)to_int(f, a.next(f), 0, 1L << 62);
        else if (f == "--corpus") corpus = a.next(f);
        else if (f == "--small") small_path = a.next(f);
        else if (f == "--large") large_path = a.next(f);
        else throw UsageError{"unknown option '" + f + "'"};
    }
    if (out.empty()) throw UsageError{"data needs --out DIR"};
    if (quick) n_train = std::min(n_train, 16), n_calib = std::min(n_calib, 8), n_test = std::min(n_test, 12), co.sample.samples = std::min(co.sample.samples, 2);
    make_dir(out);

    const auto t_all = Clock::now();
    auto t0 = Clock::now();
    const std::vector<Speech> speeches = load_speeches(corpus, 2019, 2022);
    const double load_s = seconds_since(t0);
    EngineParams ep;
    ep.context.n_ctx = 2048;  // the models' training context: a prefix is one long sentence at worst
    ep.context.n_threads = threads;
    // One pair of engines per worker, each single-threaded by default: on a busy 2-core machine
    // two independent workers lose less to descheduled threads than one 2-thread thread pool.
    std::vector<std::unique_ptr<Engine>> engines;
    std::vector<EnginePair> pairs;
    for (int w = 0; w < workers; w++) {
        engines.push_back(Engine::load(small_path, ep));
        engines.push_back(Engine::load(large_path, ep));
        pairs.push_back({engines[engines.size() - 2].get(), engines.back().get()});
    }
    const DraftOptions dopt = routing_draft_options();
    std::fprintf(stderr, "hybrid-routing: %zu speeches 2019-2022 loaded in %.1f s; %d samples/model, %d tokens max\n",
                 speeches.size(), load_s, co.sample.samples, co.sample.max_tokens);

    nlohmann::json summary = {{"corpus", corpus}, {"small", small_path}, {"large", large_path}, {"samples", co.sample.samples},
                              {"max_tokens", co.sample.max_tokens}, {"workers", workers}, {"threads", threads}, {"seed", co.seed},
                              {"quick", quick}, {"load_s", load_s}, {"max_prefix_chars", dopt.max_prefix_chars},
                              {"min_truth_chars", dopt.min_truth_chars}, {"max_truth_chars", kMaxTruthChars}};
    for (const SplitSpec& spec : default_splits(n_train, n_calib, n_test)) {
        const std::vector<Draft> drafts = split_drafts(speeches, spec, dopt, kMaxTruthChars, co.seed);
        const std::string path = out + "/routing-" + spec.name + ".jsonl";
        t0 = Clock::now();
        std::vector<RoutingRecord> recs = collect_split(pairs, drafts, co, path, [&](size_t done, size_t total) {
            if (done % 10 == 0 || done == total) {
                const double s = seconds_since(t0);
                std::fprintf(stderr, "  %s: %zu/%zu queries, %.0f s, eta %.0f s\n", spec.name.c_str(), done, total, s,
                             s / (double)done * (double)(total - done));
            }
        });
        double small_ms = 0, large_ms = 0;
        for (const RoutingRecord& r : recs) small_ms += r.small_ms, large_ms += r.large_ms;
        summary["splits"][spec.name] = {{"years", {spec.min_year, spec.max_year}}, {"queries", recs.size()},
                                        {"seconds", seconds_since(t0)}, {"small_ms_per_query", small_ms / (double)recs.size()},
                                        {"large_ms_per_query", large_ms / (double)recs.size()}};
        std::fprintf(stderr, "hybrid-routing: %s: %zu queries in %.0f s -> %s\n", spec.name.c_str(), recs.size(),
                     seconds_since(t0), path.c_str());
    }
    summary["total_s"] = seconds_since(t_all);
    write_text(out + "/routing-data.json", summary.dump(1) + "\n");
    std::printf("%s\n", summary.dump().c_str());
    return 0;
}

// ---- report ----------------------------------------------------------------------------------------

static int cmd_report(Args& a) {
    std::string data, out;
    ReportOptions ro;
    while (a.more()) {
        const std::string f = a.next("");
        if (f == "--data") data = a.next(f);
        else if (f == "--out") out = a.next(f);
        else if (f == "--resamples") ro.resamples = (int)to_int(f, a.next(f), 1, 1000000);
        else throw UsageError{"unknown option '" + f + "'"};
    }
    if (data.empty() || out.empty()) throw UsageError{"report needs --data DIR and --out DIR"};
    make_dir(out);
    make_dir(out + "/routing-routers");
    const auto t0 = Clock::now();
    const auto train = load_records(data + "/routing-train.jsonl");
    const auto calib = load_records(data + "/routing-calib.jsonl");
    const auto test = load_records(data + "/routing-test.jsonl");
    std::vector<JudgeReport> reports;
    for (Judge j : ro.judges) {
        reports.push_back(make_judge_report(train, calib, test, j, ro));
        const JudgeReport& r = reports.back();
        for (const RouterResult& x : r.routers)
            x.router->save(out + "/routing-routers/" + judge_name(j) + "-" + label_mode_name(x.labels) + ".json");
        write_text(out + "/routing-curve-" + judge_name(j) + ".svg",
                   combined_curve_svg(r, std::string("Routing on 2022 drafts (") + std::to_string(r.n_test) +
                                             " queries), judge " + judge_name(j)));
        std::fprintf(stderr, "hybrid-routing: judge %s: APGR det %.3f prob %.3f trans %.3f (random %.3f, oracle %.3f)\n",
                     judge_name(j), r.routers[0].test.apgr, r.routers[1].test.apgr, r.routers[2].test.apgr, r.apgr_random,
                     r.apgr_oracle);
    }
    write_text(out + "/routing-tables.md", report_markdown(reports));
    write_text(out + "/routing-report.json", report_json(reports) + "\n");
    const JudgeReport& h = reports.front();
    nlohmann::json last = {{"judge", judge_name(h.judge)}, {"n_test", h.n_test}, {"q_local", h.q_local}, {"q_cloud", h.q_cloud},
                           {"apgr", {{"det", h.routers[0].test.apgr}, {"prob", h.routers[1].test.apgr}, {"trans", h.routers[2].test.apgr},
                                     {"random", h.apgr_random}, {"oracle", h.apgr_oracle}}},
                           {"seconds", seconds_since(t0)}};
    std::printf("%s\n", last.dump().c_str());
    return 0;
}

int main(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; i++) a.v.push_back(argv[i]);
    try {
        if (!a.more()) throw UsageError{"missing subcommand (data, report, drafts)"};
        const std::string sub = a.next("");
        if (sub == "data") return cmd_data(a);
        if (sub == "drafts") return cmd_drafts(a);
        if (sub == "report") return cmd_report(a);
        throw UsageError{"unknown subcommand '" + sub + "' (data, report, drafts)"};
    } catch (const UsageError& e) {
        std::fprintf(stderr, "hybrid-routing: %s\n%s", e.what.c_str(), kUsage);
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "hybrid-routing: %s\n", e.what());
        return 1;
    }
}
