// fts5_match_query: free text -> a safe FTS5 MATCH expression ("w1" OR "w2" ...).
//
// Only runs of [A-Za-z0-9] and bytes >= 0x80 (UTF-8 sequences) become terms, so ASCII
// punctuation -- the whole FTS5 syntax: " * ^ : ( ) + - , and the column filter -- is a
// separator. Each term is then wrapped in double quotes, which makes AND/OR/NOT/NEAR plain
// strings. A quoted string that the tokenizer reduces to nothing (e.g. "—") matches nothing,
// it is not an error.
#include <algorithm>
#include <chrono>
#include <string>
#include <unordered_set>
#include <vector>

#include "tandem/memory_store.h"

namespace tandem {

// Frequent English words: they match most notes and cost bm25 time without ranking value.
static const char* const kStopWords[] = {
    "a", "about", "after", "all", "also", "an", "and", "any", "are", "as", "at", "be",
    "been", "being", "but", "by", "can", "could", "did", "do", "does", "for", "from", "had",
    "has", "have", "he", "her", "his", "how", "i", "if", "in", "into", "is", "it", "its",
    "may", "more", "most", "must", "my", "no", "not", "of", "on", "one", "or", "other", "our",
    "out", "over", "she", "should", "so", "some", "such", "than", "that", "the", "their",
    "them", "then", "there", "these", "they", "this", "those", "to", "up", "us", "very", "was",
    "we", "were", "what", "when", "which", "while", "who", "will", "with", "would", "you",
    "your",
};

static bool is_word_byte(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

std::vector<std::string> fts5_terms(std::string_view text, size_t max_terms) {
    static const std::unordered_set<std::string> stop(std::begin(kStopWords), std::end(kStopWords));
    // Split into lowercased words, in order.
    std::vector<std::string> words;
    size_t i = 0;
    while (i < text.size()) {
        while (i < text.size() && !is_word_byte((unsigned char)text[i])) i++;
        size_t start = i;
        while (i < text.size() && is_word_byte((unsigned char)text[i])) i++;
        if (i == start) break;
        std::string w(text.substr(start, i - start));
        for (char& c : w)
            if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
        if (w.size() < 2 || w.size() > 64 || stop.count(w)) continue;
        words.push_back(std::move(w));
    }
    // The last max_terms distinct words, kept in text order.
    std::vector<std::string> picked;
    std::unordered_set<std::string> seen;
    for (size_t k = words.size(); k-- > 0 && picked.size() < max_terms;)
        if (seen.insert(words[k]).second) picked.push_back(words[k]);
    std::reverse(picked.begin(), picked.end());
    return picked;
}

std::string fts5_match_query(std::string_view text, size_t max_terms) {
    std::string q;
    for (const std::string& w : fts5_terms(text, max_terms)) {
        if (!q.empty()) q += " OR ";
        q += '"';
        q += w;  // no '"' can be inside: it is not a word byte
        q += '"';
    }
    return q;
}

int64_t unix_ms_now() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace tandem
