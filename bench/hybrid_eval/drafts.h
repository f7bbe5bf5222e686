// Writers' drafts for the hybrid evaluation (issue 8): a prefix of a real speech (what the
// writer has typed so far) and the true next sentence(s), cut at sentence boundaries.
//
// The speeches come from ../shared/corpus/ungd.jsonl.xz through the reference cloud's reader
// (examples/cloud_server/corpus.h) and are split into sentences by the same splitter the cloud
// uses for its passages, so "a sentence" means the same thing on both sides.
//
//   speech text   s0 s1 s2 ... s(k-1) | s(k) ... s(k+t-1) | ...
//   prefix        the tail of s0..s(k-1) of at most max_prefix_chars, starting at a sentence
//                 (only s(k-1), whole, when that one sentence is longer)
//   truth         s(k)..s(k+t-1), t = truth_sentences, as written (inner white space kept)
//   stale_prefix  the prefix as it was stale_sentences earlier: the same rule for s0..s(k-1-N)
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tandem::eval {

struct Speech {
    std::string id, country;
    int year = 0;
    std::string text;
};

// Speeches with min_year <= year <= max_year from corpus/ungd.jsonl.xz (or a plain .jsonl),
// in file order. Throws std::runtime_error naming the file and line on bad input (missing
// file, bad xz data, a line that is not a JSON object, a missing or ill-typed field).
std::vector<Speech> load_speeches(const std::string& path, int min_year, int max_year);

struct DraftOptions {
    int min_prefix_sentences = 6;  // sentences of the speech before the cut, at least
    int truth_sentences = 1;       // sentences in the truth
    int max_prefix_chars = 1500;   // the prefix's length limit (cut at a sentence start)
    int stale_sentences = 4;       // how far behind the stale prefix is
    int drafts_per_speech = 1;     // distinct cut points per speech (fewer when it is short)
    // Added for the evaluation: cut points whose truth is shorter than this are not chosen
    // (e.g. a closing "Thank you."). 0: any truth.
    int min_truth_chars = 0;
};

struct Draft {
    std::string speech_id, country;
    int year = 0;
    std::string prefix;        // the writer so far (last max_prefix_chars, cut at a sentence start)
    std::string truth;         // the true next sentence(s)
    std::string stale_prefix;  // the prefix as it was stale_sentences earlier ("" when k <= N)
    // Added: the white space between prefix and truth in the speech (" " or a line break), so
    // that prefix + gap + truth is the speech text; and the cut (sentence index k).
    std::string gap = " ";
    int cut_sentence = 0;
};

// Drafts from speeches: for each speech, drafts_per_speech distinct cut points k with
// min_prefix_sentences <= k <= n - truth_sentences (n = its sentence count), chosen uniformly
// with a generator seeded from `seed` and the speech id (so a speech's drafts do not depend on
// which other speeches are in the list); its drafts in increasing k, speeches in input order.
// Speeches with no valid cut give none. Deterministic for a seed. Throws std::invalid_argument
// for options out of range (min_prefix_sentences < 1, truth_sentences < 1, max_prefix_chars
// < 1, stale_sentences < 0, drafts_per_speech < 1, min_truth_chars < 0).
std::vector<Draft> make_drafts(const std::vector<Speech>& speeches, const DraftOptions& options, uint64_t seed);

// A 64-bit mixing function (splitmix64 finalizer): the evaluation's seeded choices use it.
uint64_t mix64(uint64_t x);

// A sentence's place in its text: text[begin, end) is the sentence, trimmed.
struct SentenceSpan {
    size_t begin, end;
};

// The cloud splitter's sentences (cloud::split_sentences), located in text, in order. The
// demo client's training windows start at these (bench/demo_pair).
std::vector<SentenceSpan> sentence_spans(const std::string& text);

}  // namespace tandem::eval
