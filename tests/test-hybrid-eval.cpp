// Tests of bench/hybrid_eval (issue 8): ROUGE-L and chrF against hand-computed values and a
// case published with sacrebleu, the paired bootstrap on constructed data, and drafts cut from
// a small synthetic UNGD-style jsonl (boundaries, windows, stale prefix, determinism, errors),
// and the cloud search that leaves a draft's own speech out.
#include <doctest/doctest.h>

#include <set>
#include <stdexcept>

#include "drafts.h"
#include "suggestion_metrics.h"
#include "tandem/cloud/server_db.h"  // examples/cloud_server: the leave-one-out search
#include "test_util.h"
#include "text_metrics.h"

using namespace tandem::eval;
using tandem_test::TempDir;
using tandem_test::write_file;

// ---- suggestion measures -------------------------------------------------------------------

TEST_CASE("suggestion measures: accepted units, running past, repeats, glued words") {
    CHECK(accepted_chars(" for peace and", " for peace and security.") == 14);
    CHECK(accepted_chars(" for peace and security. The", " for peace and security.") == 24);
    CHECK(accepted_chars(" for peaceful", " for peace.") == 5);         // " for " then "peaceful" != "peace"
    CHECK(accepted_chars("ce and", "ceful means") == 0);               // the word's rest must match whole
    CHECK(accepted_chars("ce and", "ce, and") == 2);
    CHECK(accepted_chars("", "x") == 0);
    CHECK(runs_past(" security and co-operation. The United"));
    CHECK(runs_past(" security\nThe"));
    CHECK_FALSE(runs_past(" security and co-operation."));
    CHECK_FALSE(runs_past(" with Mr. Smith"));
    CHECK(repeats_recent("We met. The United Nations is facing a crisis of confidence.", " The United Nations is facing a crisis."));
    CHECK(repeats_recent("We met.", " The crisis of the world is the crisis of the world"));  // within itself
    CHECK_FALSE(repeats_recent("The United Nations is facing a crisis. We met. Then we spoke.", " The United Nations is facing a test."));
    CHECK_FALSE(repeats_recent("We met.", " The United Nations"));
    std::unordered_set<std::string> dict;
    add_words("Peace and the United Nations", dict);
    CHECK(dict.count("peace"));
    CHECK(trailing_word("for pea") == "pea");
    CHECK(trailing_word("for ") == "");
    CHECK_FALSE(glued_word("for Pea", "ce and", dict));
    CHECK(glued_word("for pea", " and", dict));     // a new word after half a word
    CHECK(glued_word("for pea", "nut", dict));      // not a word
    CHECK_FALSE(glued_word("for the", " United", dict));  // the word was complete
    CHECK_FALSE(glued_word("for ", "peace", dict));       // not inside a word
}

// ---- ROUGE-L -----------------------------------------------------------------------------

TEST_CASE("rouge_l_f1: lower-cased word LCS F1, hand-computed") {
    CHECK(rouge_tokens("Don't STOP-now, 2022!") == std::vector<std::string>{"don", "t", "stop", "now", "2022"});
    // LCS "the cat on the mat" = 5 of 6 words on both sides
    CHECK(rouge_l_f1("The cat sat on the mat.", "the cat is on the mat") == doctest::Approx(5.0 / 6));
    // LCS "b d" = 2: P = 2/4, R = 2/3, F1 = 4/7
    CHECK(rouge_l_f1("a b c d", "b d e") == doctest::Approx(4.0 / 7));
    CHECK(rouge_l_f1("b d e", "a b c d") == doctest::Approx(4.0 / 7));  // symmetric
    CHECK(rouge_l_f1("Peace and security.", "peace AND security") == doctest::Approx(1.0));
    CHECK(rouge_l_f1("war", "peace") == 0.0);
    CHECK(rouge_l_f1("", "peace") == 0.0);
    CHECK(rouge_l_f1("...", "...") == 0.0);  // no words on either side
}

// ---- chrF --------------------------------------------------------------------------------

TEST_CASE("chrf: sacrebleu defaults, hand-computed") {
    CHECK(chrf("peace", "peace") == doctest::Approx(100.0));
    // n=1: 2/3 both ways, n=2: 1/2, n=3: 0 (both sides have a trigram); n>3 absent -> 3 orders.
    // P = R = (2/3 + 1/2 + 0) / 3 = 7/18.
    CHECK(chrf("abc", "abd") == doctest::Approx(100.0 * 7 / 18));
    CHECK(chrf("a b\tc", "ab\nd") == doctest::Approx(100.0 * 7 / 18));  // white space removed
    // P != R: n=1 P 1 R 2/3, n=2 P 1 R 1/2 (n=3: no hyp trigram). P = 1, R = 7/12;
    // F2 = 5 P R / (4 P + R) = 7/11.
    CHECK(chrf("ab", "abc") == doctest::Approx(100.0 * 7 / 11));
    // recall weighs more (beta 2): the reverse pair scores lower
    CHECK(chrf("abc", "ab") == doctest::Approx(100.0 * 5 * (7.0 / 12) / (4 * 7.0 / 12 + 1)));
    // code points, not bytes: "é" is one character
    CHECK(chrf("\xc3\xa9" "a", "\xc3\xa9" "e") == doctest::Approx(25.0));
    CHECK(chrf("", "peace") == 0.0);
    CHECK(chrf("   ", "") == 0.0);
    CHECK(chrf("xyz", "abc") == 0.0);
}

TEST_CASE("chrf: the example published with sacrebleu's chrF metric card") {
    // HuggingFace's chrf metric card (sacrebleu CHRF defaults): 61.576379378113785.
    CHECK(chrf("The relationship between Obama and Netanyahu is not exactly friendly.",
               "The ties between Obama and Netanyahu are not particularly friendly.") ==
          doctest::Approx(61.576379378113785).epsilon(1e-9));
}

// ---- paired bootstrap --------------------------------------------------------------------

TEST_CASE("paired_bootstrap: constant and alternating differences") {
    std::vector<double> b(40), a(40);
    for (size_t i = 0; i < b.size(); i++) {
        b[i] = (double)i * 0.37;
        a[i] = b[i] + 0.5;
    }
    Interval c = paired_bootstrap(a, b);
    CHECK(c.mean == doctest::Approx(0.5));
    CHECK(c.lo == doctest::Approx(0.5));
    CHECK(c.hi == doctest::Approx(0.5));

    // d = 0,1,0,1,... (n = 100): mean 0.5, standard error 0.05 -> 95% CI about [0.40, 0.60]
    std::vector<double> x(100), z(100, 0.0);
    for (size_t i = 0; i < x.size(); i++) x[i] = (double)(i % 2);
    const Interval d = paired_bootstrap(x, z, 2000, 7);
    CHECK(d.mean == doctest::Approx(0.5));
    CHECK(d.lo > 0.38);
    CHECK(d.lo < 0.44);
    CHECK(d.hi > 0.56);
    CHECK(d.hi < 0.62);
    const Interval again = paired_bootstrap(x, z, 2000, 7);
    CHECK(again.lo == d.lo);
    CHECK(again.hi == d.hi);
    const Interval other = paired_bootstrap(x, z, 2000, 8);
    CHECK((other.lo != d.lo || other.hi != d.hi));
    // the interval is for a - b: swapping the sides mirrors it
    const Interval neg = paired_bootstrap(z, x, 2000, 7);
    CHECK(neg.mean == doctest::Approx(-0.5));
    CHECK(neg.lo == doctest::Approx(-d.hi));
    CHECK(neg.hi == doctest::Approx(-d.lo));
}

TEST_CASE("paired_bootstrap: bad input") {
    CHECK_THROWS_AS(paired_bootstrap({1, 2}, {1}), std::invalid_argument);
    CHECK_THROWS_AS(paired_bootstrap({}, {}), std::invalid_argument);
    CHECK_THROWS_AS(paired_bootstrap({1}, {1}, 0), std::invalid_argument);
}

// ---- drafts ------------------------------------------------------------------------------

// "Sentence N of ID is here." x n, a line break after sentence 4.
static std::string speech_text(const std::string& id, int n) {
    std::string t;
    for (int i = 0; i < n; i++) {
        if (i > 0) t += i == 5 ? "\n" : " ";
        t += "Sentence " + std::to_string(i) + " of " + id + " is here.";
    }
    return t;
}

static std::string jsonl_line(const std::string& id, int year, const std::string& text) {
    return "{\"id\": \"" + id + "\", \"country\": \"" + id.substr(0, 3) + "\", \"session\": " +
           std::to_string(year - 1945) + ", \"year\": " + std::to_string(year) + ", \"text\": \"" + text + "\"}\n";
}

static std::string escape_newlines(std::string s) {
    for (size_t p = 0; (p = s.find('\n', p)) != std::string::npos; p += 2) s.replace(p, 1, "\\n");
    return s;
}

static int sentences_in(const std::string& s) {
    int n = 0;
    for (size_t p = 0; (p = s.find("is here.", p)) != std::string::npos; p++) n++;
    return n;
}

TEST_CASE("load_speeches: year filter and errors naming file and line") {
    TempDir dir;
    const std::string path = dir.file("s.jsonl");
    write_file(path, jsonl_line("AAA_1", 2019, "One. Two.") + "\n" + jsonl_line("BBB_1", 2020, "Three.") +
                         jsonl_line("CCC_1", 2022, escape_newlines("Four.\nFive.")));
    const auto all = load_speeches(path, 0, 0);
    REQUIRE(all.size() == 3);
    CHECK(all[2].text == "Four.\nFive.");
    CHECK(all[0].country == "AAA");
    const auto mid = load_speeches(path, 2020, 2021);
    REQUIRE(mid.size() == 1);
    CHECK(mid[0].id == "BBB_1");
    CHECK(mid[0].year == 2020);

    write_file(dir.file("bad.jsonl"), jsonl_line("AAA_1", 2019, "One.") + "{not json\n");
    try {
        load_speeches(dir.file("bad.jsonl"), 0, 0);
        FAIL("no error");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()).find("bad.jsonl: line 2") != std::string::npos);
    }
    write_file(dir.file("field.jsonl"), "{\"id\": \"X\", \"country\": \"X\", \"session\": 1, \"year\": 1946}\n");
    CHECK_THROWS_WITH_AS(load_speeches(dir.file("field.jsonl"), 0, 0), doctest::Contains("line 1: missing string field 'text'"),
                         std::runtime_error);
    CHECK_THROWS_WITH_AS(load_speeches(dir.file("none.jsonl"), 0, 0), doctest::Contains("none.jsonl: cannot open"),
                         std::runtime_error);
}

TEST_CASE("make_drafts: cuts at sentence boundaries, prefix + gap + truth is the speech") {
    std::vector<Speech> speeches;
    for (int i = 0; i < 20; i++) speeches.push_back({"S" + std::to_string(i), "XXX", 2022, speech_text("S" + std::to_string(i), 12)});
    DraftOptions o;
    o.min_prefix_sentences = 3;
    o.stale_sentences = 2;
    o.max_prefix_chars = 100000;
    const std::vector<Draft> drafts = make_drafts(speeches, o, 42);
    REQUIRE(drafts.size() == 20);
    std::set<int> cuts;
    for (size_t i = 0; i < drafts.size(); i++) {
        const Draft& d = drafts[i];
        const std::string& text = speeches[i].text;
        CHECK(d.speech_id == speeches[i].id);
        CHECK(d.year == 2022);
        CHECK(d.cut_sentence >= 3);
        CHECK(d.cut_sentence <= 11);
        cuts.insert(d.cut_sentence);
        // the whole speech up to the cut, then its white space, then exactly one sentence
        CHECK(text.compare(0, d.prefix.size() + d.gap.size() + d.truth.size(), d.prefix + d.gap + d.truth) == 0);
        CHECK(sentences_in(d.prefix) == d.cut_sentence);
        CHECK(d.truth == "Sentence " + std::to_string(d.cut_sentence) + " of " + d.speech_id + " is here.");
        CHECK(d.gap == (d.cut_sentence == 5 ? "\n" : " "));
        // stale: two sentences fewer, a prefix of the prefix
        CHECK(sentences_in(d.stale_prefix) == d.cut_sentence - 2);
        CHECK(d.prefix.compare(0, d.stale_prefix.size(), d.stale_prefix) == 0);
    }
    CHECK(cuts.size() > 3);  // the cut points vary across speeches

    // deterministic for a seed; another seed moves some cuts
    const std::vector<Draft> again = make_drafts(speeches, o, 42);
    const std::vector<Draft> other = make_drafts(speeches, o, 43);
    int moved = 0;
    for (size_t i = 0; i < drafts.size(); i++) {
        CHECK(again[i].prefix == drafts[i].prefix);
        CHECK(again[i].truth == drafts[i].truth);
        moved += other[i].cut_sentence != drafts[i].cut_sentence;
    }
    CHECK(moved > 0);
    // a speech's drafts do not depend on the other speeches in the list
    const std::vector<Draft> alone = make_drafts({speeches[7]}, o, 42);
    REQUIRE(alone.size() == 1);
    CHECK(alone[0].truth == drafts[7].truth);
}

TEST_CASE("make_drafts: prefix window, several drafts, short speeches, short truths") {
    const Speech s{"S1", "XXX", 2022, speech_text("S1", 12)};  // sentences of 25-26 chars
    DraftOptions o;
    o.min_prefix_sentences = 6;
    o.max_prefix_chars = 60;  // two sentences and their space: 51-53 chars; three: 77-79
    o.stale_sentences = 4;
    o.drafts_per_speech = 3;
    const std::vector<Draft> d = make_drafts({s}, o, 1);
    REQUIRE(d.size() == 3);
    CHECK(d[0].cut_sentence < d[1].cut_sentence);
    CHECK(d[1].cut_sentence < d[2].cut_sentence);
    for (const Draft& x : d) {
        CHECK(x.prefix.size() <= 60);
        CHECK(sentences_in(x.prefix) == 2);
        CHECK(x.prefix.rfind("Sentence ", 0) == 0);  // starts at a sentence
        CHECK(x.prefix.find("Sentence " + std::to_string(x.cut_sentence - 1) + " ") != std::string::npos);
        CHECK(x.stale_prefix.find("Sentence " + std::to_string(x.cut_sentence - 5) + " ") != std::string::npos);
        CHECK(sentences_in(x.stale_prefix) == std::min(2, x.cut_sentence - 4));
    }
    // a one-sentence limit smaller than a sentence: the last sentence, whole
    o.max_prefix_chars = 5;
    o.drafts_per_speech = 1;
    const std::vector<Draft> one = make_drafts({s}, o, 1);
    REQUIRE(one.size() == 1);
    CHECK(sentences_in(one[0].prefix) == 1);
    // more drafts asked than cut points: every cut once (k = 6..11)
    o.drafts_per_speech = 50;
    CHECK(make_drafts({s}, o, 1).size() == 6);
    // too short for a cut: no draft
    CHECK(make_drafts({Speech{"S2", "XXX", 2022, speech_text("S2", 6)}}, o, 1).empty());
    // two-sentence truths, and a closing "Thank you." left out by min_truth_chars
    o.truth_sentences = 2;
    for (const Draft& x : make_drafts({s}, o, 1)) CHECK(sentences_in(x.truth) == 2);
    const Speech thanks{"S3", "XXX", 2022, speech_text("S3", 8) + " Thank you."};
    DraftOptions t;
    t.min_prefix_sentences = 8;
    CHECK(make_drafts({thanks}, t, 1).size() == 1);
    t.min_truth_chars = 11;
    CHECK(make_drafts({thanks}, t, 1).empty());
}

TEST_CASE("make_drafts: options out of range are refused") {
    const std::vector<Speech> s{{"S1", "XXX", 2022, speech_text("S1", 12)}};
    auto bad = [&](auto edit) {
        DraftOptions o;
        edit(o);
        CHECK_THROWS_AS(make_drafts(s, o, 1), std::invalid_argument);
    };
    bad([](DraftOptions& o) { o.min_prefix_sentences = 0; });
    bad([](DraftOptions& o) { o.truth_sentences = 0; });
    bad([](DraftOptions& o) { o.max_prefix_chars = 0; });
    bad([](DraftOptions& o) { o.stale_sentences = -1; });
    bad([](DraftOptions& o) { o.drafts_per_speech = 0; });
    bad([](DraftOptions& o) { o.min_truth_chars = -1; });
}

// ---- the cloud's corpus, leave-one-out ------------------------------------------------------

TEST_CASE("ServerDb::search leaves the draft's own speech out (the memory test's leave-one-out corpus)") {
    TempDir d;
    const auto db_owner = tandem::cloud::open_server_db(d.file("cloud.db"));
    tandem::cloud::ServerDb& db = *db_owner;
    db.replace_corpus({{"AAA_77_2022", "AAA 2022", {"Grain exports from Odesa resumed.", "The grain corridor matters."}},
                       {"BBB_77_2022", "BBB 2022", {"We welcome the grain corridor."}},
                       {"CCC_77_2022", "CCC 2022", {"Climate finance is overdue."}}},
                      "test");
    const std::string q = "the grain corridor";
    CHECK(db.search(q, 10).size() == 3);
    const auto loo = db.search(q, 10, "AAA_77_2022");
    REQUIRE(loo.size() == 1);
    CHECK(loo[0].doc_id == "BBB_77_2022");
    CHECK(db.search(q, 10, "nobody").size() == 3);
    CHECK(db.search(q, 1, "BBB_77_2022").size() == 1);  // the limit counts what is returned
}
