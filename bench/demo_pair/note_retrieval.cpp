// Sentence-level BM25 for the demo client's training notes (see note_retrieval.h).
#include "note_retrieval.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "tandem/memory_store.h"  // fts5_terms

namespace tandem::demo {

static constexpr double kK1 = 1.2, kB = 0.75;
static constexpr size_t kQueryTerms = 32;  // as the cloud's fts5_match_query(context, 32)
static constexpr size_t kSentenceTerms = 1 << 16;

size_t SentenceIndex::add_speech(int speech, const std::vector<std::string>& sentences, size_t min_chars,
                                 size_t max_chars) {
    size_t added = 0;
    for (const std::string& s : sentences) {
        if (s.size() < min_chars || s.size() > max_chars) continue;
        const std::vector<std::string> terms = fts5_terms(s, kSentenceTerms);
        if (terms.empty()) continue;
        const uint32_t id = (uint32_t)texts_.size();
        for (const std::string& t : terms) postings_[t].push_back(id);
        texts_.push_back(s);
        speech_.push_back(speech);
        n_terms_.push_back((uint32_t)terms.size());
        total_terms_ += terms.size();
        added++;
    }
    return added;
}

std::vector<size_t> SentenceIndex::search(std::string_view query, size_t k, int exclude_speech,
                                          size_t per_speech) const {
    std::vector<size_t> out;
    if (texts_.empty() || k == 0) return out;
    const double n = (double)texts_.size();
    const double avg = (double)total_terms_ / n;
    std::vector<double> score(texts_.size(), 0.0);
    std::vector<uint32_t> touched;
    for (const std::string& t : fts5_terms(query, kQueryTerms)) {
        const auto it = postings_.find(t);
        if (it == postings_.end()) continue;
        const double df = (double)it->second.size();
        const double idf = std::log(1.0 + (n - df + 0.5) / (df + 0.5));
        for (uint32_t s : it->second) {
            if (speech_[s] == exclude_speech) continue;
            if (score[s] == 0.0) touched.push_back(s);
            score[s] += idf * (kK1 + 1.0) / (1.0 + kK1 * (1.0 - kB + kB * (double)n_terms_[s] / avg));
        }
    }
    std::sort(touched.begin(), touched.end(), [&](uint32_t a, uint32_t b) {
        return score[a] != score[b] ? score[a] > score[b] : a < b;
    });
    std::map<int, size_t> from_speech;
    std::set<std::string_view> seen;
    for (uint32_t s : touched) {
        if (out.size() >= k) break;
        if (from_speech[speech_[s]] >= per_speech || !seen.insert(texts_[s]).second) continue;
        from_speech[speech_[s]]++;
        out.push_back(s);
    }
    return out;
}

}  // namespace tandem::demo
