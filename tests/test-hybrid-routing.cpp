// Tests of the routing half of bench/hybrid_eval (issue 8): sentence cutting, scoring, the
// JSONL the router trains on (read back by the router's own parser), the judges, the per-query
// routing arithmetic against router_eval, and the engine side (k samples sharing one prefill,
// teacher-forced log-likelihood) on the tiny stories260K model.
#include <doctest/doctest.h>

#include <cmath>

#include "tandem/cloud/corpus.h"
#include "routing_data.h"
#include "routing_report.h"
#include "routing_sample.h"
#include "tandem/router_train.h"
#include "test_util.h"
#include "text_metrics.h"

using namespace tandem;
using namespace tandem::eval;
using tandem_test::shared_path;

// ---- sentences -----------------------------------------------------------------------------------

TEST_CASE("first_sentence: the cloud splitter's first sentence, trimmed") {
    CHECK(first_sentence(" The Assembly met. Then it voted.") == "The Assembly met.");
    CHECK(first_sentence("\nMr. President, we are here. Next") == "Mr. President, we are here.");  // not after "Mr."
    CHECK(first_sentence("We must act now\nand again") == "We must act now");                  // a line break ends it
    CHECK(first_sentence("Is peace possible? Yes.") == "Is peace possible?");
    CHECK(first_sentence("a growth of 1.5 per cent") == "a growth of 1.5 per cent");  // no sentence end: all of it
    CHECK(first_sentence(" \n ") == "");
    CHECK(first_sentence("") == "");
}

TEST_CASE("first_sentence_complete: true once a second sentence starts") {
    CHECK_FALSE(first_sentence_complete("The Assembly met"));
    CHECK_FALSE(first_sentence_complete("The Assembly met."));  // the next token may be "5" of "met.5"
    CHECK(first_sentence_complete("The Assembly met. It"));
    CHECK_FALSE(first_sentence_complete("We thank Mr. Guterres"));
    CHECK(first_sentence_complete("Thank you\nThe"));
    CHECK_FALSE(first_sentence_complete("\n\nThe"));  // leading breaks start nothing
}

// ---- records and the router's JSONL ---------------------------------------------------------------

static RoutingRecord sample_record() {
    RoutingRecord r;
    r.id = "ABC_77_2022#12";
    r.country = "ABC";
    r.year = 2022;
    r.query = "Climate change threatens our islands.";
    r.truth = "We call for urgent action on climate finance.";
    r.small_samples = {"We call for urgent action on climate finance.", "", "Thank you."};
    r.large_samples = {"We call for action.", "The sea is rising."};
    r.small_truth_ll = -3.25, r.large_truth_ll = -2.5;
    r.query_logprob_mean = -2.75, r.gen_entropy = 2.5;
    r.small_ms = 900, r.large_ms = 2500;
    score_record(r);
    return r;
}

TEST_CASE("score_record: chrF and ROUGE-L of every sample against the truth") {
    const RoutingRecord r = sample_record();
    REQUIRE(r.small_chrf.size() == 3);
    REQUIRE(r.large_chrf.size() == 2);
    CHECK(r.small_chrf[0] == doctest::Approx(100.0));  // the truth itself
    CHECK(r.small_rouge[0] == doctest::Approx(1.0));
    CHECK(r.small_chrf[1] == 0.0);                      // an empty continuation scores 0
    CHECK(r.small_rouge[1] == 0.0);
    CHECK(r.large_chrf[0] == doctest::Approx(chrf("We call for action.", r.truth)));
    CHECK(r.large_rouge[1] == doctest::Approx(rouge_l_f1("The sea is rising.", r.truth)));
    CHECK(r.large_chrf[0] > r.large_chrf[1]);
}

TEST_CASE("record_to_jsonl: `tandem router train` reads the line, and it reads back exactly") {
    const RoutingRecord r = sample_record();
    const std::string line = record_to_jsonl(r);
    CHECK(line.find('\n') == std::string::npos);
    // the router's own parser: query, chrF scores and both signals
    const Dataset d = parse_routing_jsonl(line + "\n" + line + "\n", "mem.jsonl");
    REQUIRE(d.rows.size() == 2);
    CHECK(d.rows[0].query == r.query);
    CHECK(d.rows[0].small_scores == r.small_chrf);
    CHECK(d.rows[0].large_scores == r.large_chrf);
    REQUIRE(d.rows[0].signals.query_logprob_mean.has_value());
    CHECK(*d.rows[0].signals.query_logprob_mean == -2.75);
    CHECK(*d.rows[0].signals.gen_entropy == 2.5);
    CHECK_FALSE(d.rows[0].signals.memory_coverage.has_value());
    CHECK(d.signals.size() == 2);

    const RoutingRecord b = record_from_jsonl(line, "x.jsonl:1");
    CHECK(b.id == r.id);
    CHECK(b.year == 2022);
    CHECK(b.truth == r.truth);
    CHECK(b.small_samples == r.small_samples);
    CHECK(b.large_samples == r.large_samples);
    CHECK(b.small_rouge == r.small_rouge);
    CHECK(b.large_truth_ll == -2.5);
    CHECK(record_to_jsonl(b) == line);
}

TEST_CASE("record_to_jsonl / record_from_jsonl: inconsistent or bad records are refused by name") {
    RoutingRecord r = sample_record();
    r.small_chrf.pop_back();  // 2 scores for 3 samples
    CHECK_THROWS_WITH_AS(record_to_jsonl(r), doctest::Contains("'small_scores' has 2 scores for 3 samples"), RoutingDataError);
    r = sample_record();
    r.gen_entropy = NAN;
    CHECK_THROWS_WITH_AS(record_to_jsonl(r), doctest::Contains("'gen_entropy' is not finite"), RoutingDataError);
    r = sample_record();
    r.large_samples.clear(), r.large_chrf.clear(), r.large_rouge.clear();
    CHECK_THROWS_AS(record_to_jsonl(r), RoutingDataError);

    CHECK_THROWS_WITH_AS(record_from_jsonl("{\"query\": 1}", "f.jsonl:3"), doctest::Contains("f.jsonl:3: field 'query'"),
                         RoutingDataError);
    CHECK_THROWS_WITH_AS(record_from_jsonl("not json", "f.jsonl:4"), doctest::Contains("f.jsonl:4: invalid JSON"),
                         RoutingDataError);
    std::string line = record_to_jsonl(sample_record());
    const size_t at = line.find("\"truth\"");
    line.replace(at, 7, "\"truth_\"");
    CHECK_THROWS_WITH_AS(record_from_jsonl(line, "f.jsonl:5"), doctest::Contains("field 'truth': missing"), RoutingDataError);
}

TEST_CASE("load_records: reads a file, skips blank lines, names FILE:LINE on errors") {
    tandem_test::TempDir dir;
    const std::string line = record_to_jsonl(sample_record());
    tandem_test::write_file(dir.file("a.jsonl"), line + "\n\n" + line + "\n");
    CHECK(load_records(dir.file("a.jsonl")).size() == 2);
    tandem_test::write_file(dir.file("b.jsonl"), line + "\n{\n");
    CHECK_THROWS_WITH_AS(load_records(dir.file("b.jsonl")), doctest::Contains("b.jsonl:2"), RoutingDataError);
    CHECK_THROWS_WITH_AS(load_records(dir.file("none.jsonl")), doctest::Contains("cannot open"), RoutingDataError);
}

TEST_CASE("to_dataset: each judge's scores, both signals") {
    const std::vector<RoutingRecord> recs = {sample_record(), sample_record()};
    const Dataset c = to_dataset(recs, Judge::chrf, "t");
    CHECK(c.rows[1].small_scores == recs[1].small_chrf);
    CHECK(c.rows[1].line == 2);
    const Dataset rl = to_dataset(recs, Judge::rouge_l, "t");
    CHECK(rl.rows[0].large_scores == recs[0].large_rouge);
    const Dataset ll = to_dataset(recs, Judge::likelihood, "t");
    CHECK(ll.rows[0].small_scores == std::vector<double>{-3.25});
    CHECK(ll.rows[0].large_scores == std::vector<double>{-2.5});
    CHECK(*ll.rows[0].signals.query_logprob_mean == -2.75);
    CHECK(parse_judge("likelihood") == Judge::likelihood);
    CHECK_THROWS_WITH_AS(parse_judge("bleu"), doctest::Contains("chrf, rouge_l, likelihood"), RoutingDataError);
}

// ---- routing arithmetic against router_eval ---------------------------------------------------------

TEST_CASE("routed_qualities and apgr_of_scores agree with router_eval on the same data") {
    Dataset d;
    d.file = "mem";
    std::vector<double> qs, ql;
    for (int i = 0; i < 37; i++) {
        TrainingRow r;
        r.query = "query number " + std::to_string(i);
        r.small_scores = {std::fmod(i * 7.3, 11.0), std::fmod(i * 3.1, 5.0)};
        r.large_scores = {std::fmod(i * 5.7, 13.0) + 1};
        qs.push_back(mean_quality(r.small_scores));
        ql.push_back(mean_quality(r.large_scores));
        d.rows.push_back(r);
    }
    RandomRouter rr(5);
    const std::vector<double> scores = router_scores(rr, d);
    const EvalReport rep = evaluate_router(rr, d);
    CHECK(apgr_of_scores(scores, qs, ql) == doctest::Approx(rep.apgr).epsilon(1e-12));
    for (size_t k : {0, 1, 10, 22, 37}) {
        const std::vector<double> q = routed_qualities(scores, qs, ql, k);
        double m = 0;
        for (double x : q) m += x / (double)q.size();
        CHECK(m == doctest::Approx(quality_at_cloud_count(scores, d, k)).epsilon(1e-12));
    }
    // the oracle's order (largest gain first) has the highest APGR
    std::vector<double> oracle(qs.size());
    for (size_t i = 0; i < qs.size(); i++) oracle[i] = qs[i] - ql[i];
    CHECK(apgr_of_scores(oracle, qs, ql) == doctest::Approx(rep.apgr_oracle).epsilon(1e-12));

    // bootstrap: a router against itself differs by exactly 0; deterministic for a seed
    const Interval same = bootstrap_apgr(scores, scores, qs, ql, 200, 3);
    CHECK(same.mean == 0.0);
    CHECK(same.lo == 0.0);
    CHECK(same.hi == 0.0);
    const Interval a = bootstrap_apgr(oracle, scores, qs, ql, 300, 9), b = bootstrap_apgr(oracle, scores, qs, ql, 300, 9);
    CHECK(a.lo == b.lo);
    CHECK(a.mean > 0);
    CHECK(a.lo <= a.mean);
    CHECK(a.mean <= a.hi);
    CHECK_THROWS_AS(routed_qualities({1.0}, qs, ql, 1), std::invalid_argument);
}

// ---- the engine side (stories260K) ---------------------------------------------------------------------

static std::unique_ptr<Engine> stories() {
    EngineParams ep;
    ep.context.n_ctx = 256;
    ep.context.n_threads = 2;
    return Engine::load(shared_path("models/stories260K.gguf"), ep);
}

TEST_CASE("tokenize_prompt_and_truth: the joined text's tokens, split where the prefix ends") {
    auto e = stories();
    const std::string prefix = "Once upon a time, there was a little girl named Lily.";
    const PromptTokens p = tokenize_prompt_and_truth(e->tokenizer(), prefix, " ", "She loved to play.");
    std::vector<int32_t> joined = p.prompt;
    joined.insert(joined.end(), p.truth.begin(), p.truth.end());
    CHECK(joined == e->tokenizer().encode(prefix + " She loved to play.", e->tokenizer().add_bos()));
    CHECK(p.prompt == e->tokenizer().encode(prefix, e->tokenizer().add_bos()));
    CHECK_FALSE(p.truth.empty());
    CHECK_THROWS_AS(tokenize_prompt_and_truth(e->tokenizer(), prefix, " ", ""), std::invalid_argument);
}

TEST_CASE("sample_continuations: k samples share one prefill and stop after their first sentence") {
    auto e = stories();
    const std::vector<int32_t> prompt = e->tokenizer().encode("Once upon a time, there was a little girl named Lily.", true);
    SampleOptions opt;
    opt.samples = 4;
    opt.max_tokens = 48;
    const SampleResult a = sample_continuations(*e, prompt, opt, 42);
    REQUIRE(a.sentences.size() == 4);
    // the first sample evaluates the prompt, the other three only its last token
    CHECK(a.evaluated_prompt_tokens == (int64_t)prompt.size() + 3);
    int distinct = 0;
    for (size_t i = 0; i < a.sentences.size(); i++) {
        MESSAGE("sample " << i << ": " << a.sentences[i]);
        CHECK(tandem::cloud::split_sentences(a.sentences[i]).size() <= 1);
        distinct += i > 0 && a.sentences[i] != a.sentences[0];
    }
    CHECK(distinct > 0);                                   // different seeds, different samples
    CHECK(a.generated_tokens < 4 * (int64_t)opt.max_tokens);  // stopped at sentence ends
    // the same seed on a fresh engine gives the same samples (reuse does not change them)
    auto f = stories();
    f->generate("One day", GenerateParams{});  // an unrelated cache first
    const SampleResult b = sample_continuations(*f, prompt, opt, 42);
    CHECK(b.sentences == a.sentences);
    // the cache is left holding the prompt: the next prefill reuses all but the last token
    CHECK(e->prefill(prompt) == (int64_t)prompt.size() - 1);
}

TEST_CASE("continuation_logprob_mean: teacher forcing, equal to a direct all-logits pass") {
    auto e = stories();
    const PromptTokens p = tokenize_prompt_and_truth(e->tokenizer(), "Lily went to the park.", " ", "She saw a big red ball.");
    const double got = continuation_logprob_mean(*e, p.prompt, p.truth);
    // direct: one fresh context, prompt + truth with all logits
    auto f = stories();
    std::vector<int32_t> all = p.prompt;
    all.insert(all.end(), p.truth.begin(), p.truth.end());
    ComputeContext& ctx = f->context();
    ctx.eval(all.data(), (int64_t)all.size(), true);
    const int64_t nv = f->model().config().n_vocab;
    double sum = 0;
    for (size_t j = 0; j < p.truth.size(); j++) {
        const float* row = ctx.logits() + (p.prompt.size() - 1 + j) * nv;
        double mx = row[0], z = 0;
        for (int64_t v = 0; v < nv; v++) mx = std::max(mx, (double)row[v]);
        for (int64_t v = 0; v < nv; v++) z += std::exp(row[v] - mx);
        sum += row[p.truth[j]] - mx - std::log(z);
    }
    CHECK(got == doctest::Approx(sum / (double)p.truth.size()).epsilon(1e-4));
    CHECK(got < 0);
    CHECK(e->context().n_past() == (int64_t)p.prompt.size());  // the cache holds the prompt again
    CHECK(e->prefill(p.prompt) == (int64_t)p.prompt.size() - 1);
    // a likely continuation scores higher than a scrambled one
    const PromptTokens q = tokenize_prompt_and_truth(e->tokenizer(), "Lily went to the park.", " ", "ball red big a saw She.");
    CHECK(continuation_logprob_mean(*e, q.prompt, q.truth) < got);
    CHECK_THROWS_AS(continuation_logprob_mean(*e, p.prompt, {}), std::invalid_argument);
    CHECK_THROWS_AS(continuation_logprob_mean(*e, p.prompt, {1 << 20}), std::invalid_argument);
}

TEST_CASE("pearson and gap_split_half_r: is the per-query gap signal or sampling noise") {
    CHECK(pearson({1, 2, 3}, {2, 4, 6}) == doctest::Approx(1.0));
    CHECK(pearson({1, 2, 3}, {3, 2, 1}) == doctest::Approx(-1.0));
    CHECK(std::isnan(pearson({1, 1, 1}, {1, 2, 3})));
    CHECK_THROWS_AS(pearson({1}, {1}), std::invalid_argument);
    // gaps that repeat across the two halves of the samples: r = 1
    std::vector<RoutingRecord> recs;
    for (int i = 0; i < 5; i++) {
        RoutingRecord r = sample_record();
        r.small_chrf = {10.0, 20.0, 10.0, 20.0};
        r.large_chrf = {10.0 + i, 20.0 + 2 * i, 10.0 + 2 * i, 20.0 + i};  // gap i*1.5 in both halves
        recs.push_back(r);
    }
    CHECK(gap_split_half_r(recs, Judge::chrf) == doctest::Approx(1.0));
    // the second half's gap reversed: r = -1
    for (int i = 0; i < 5; i++) recs[i].large_chrf = {10.0 + i, 20.0 + 2 * i, 10.0 - 2 * i, 20.0 - i};
    CHECK(gap_split_half_r(recs, Judge::chrf) == doctest::Approx(-1.0));
    CHECK(std::isnan(gap_split_half_r(recs, Judge::likelihood)));
    recs[0].small_chrf = {10.0};
    CHECK(std::isnan(gap_split_half_r(recs, Judge::chrf)));
}
