// The demo client's training notes (bench/demo_pair): sentence-level BM25 over the speeches of
// one year, so that a training window of a speech can be preceded by the sentences of *other*
// speeches of the same year that best match the window's opening, as a cloud's notes would be.
//
// Terms are fts5_terms() (memory_store): lowercased runs of letters and digits, the product's
// stop words removed, each term counted once per sentence. Scores are Okapi BM25 (k1 1.2,
// b 0.75) with idf = ln(1 + (N - df + 0.5) / (df + 0.5)).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tandem::demo {

class SentenceIndex {
public:
    // Adds the sentences of speech number `speech` whose size is within [min_chars, max_chars]
    // and that have at least one term. Returns how many were added.
    size_t add_speech(int speech, const std::vector<std::string>& sentences, size_t min_chars, size_t max_chars);

    // The indices of the best k sentences for `query` (its last 32 distinct terms), best first
    // (equal scores: the earlier sentence first). None from exclude_speech, at most per_speech
    // from any one speech, no text twice, only sentences sharing a term with the query.
    std::vector<size_t> search(std::string_view query, size_t k, int exclude_speech, size_t per_speech) const;

    size_t size() const { return texts_.size(); }
    const std::string& text(size_t i) const { return texts_.at(i); }
    int speech(size_t i) const { return speech_.at(i); }

private:
    std::vector<std::string> texts_;
    std::vector<int> speech_;
    std::vector<uint32_t> n_terms_;  // (sentences) distinct terms of each sentence
    std::unordered_map<std::string, std::vector<uint32_t>> postings_;  // term -> sentences, ascending
    uint64_t total_terms_ = 0;
};

}  // namespace tandem::demo
