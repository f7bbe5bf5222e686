// Suggestion measures (see suggestion_metrics.h).
#include "suggestion_metrics.h"

#include "tandem/cloud/corpus.h"  // examples/cloud_server: split_sentences

namespace tandem::eval {

namespace {

bool is_word_byte(unsigned char c) { return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || c >= 0x80; }

// The length of the unit that starts at s[i].
size_t unit_len(std::string_view s, size_t i) {
    if (!is_word_byte((unsigned char)s[i])) return 1;
    size_t j = i;
    while (j < s.size() && is_word_byte((unsigned char)s[j])) j++;
    return j - i;
}

std::string lower(std::string_view w) {
    std::string out(w);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    return out;
}

std::vector<std::string> words(std::string_view text) {
    std::vector<std::string> out;
    for (size_t i = 0; i < text.size();) {
        const size_t n = unit_len(text, i);
        if (is_word_byte((unsigned char)text[i])) out.push_back(lower(text.substr(i, n)));
        i += n;
    }
    return out;
}

}  // namespace

std::string_view trailing_word(std::string_view text) {
    size_t w = text.size();
    while (w > 0 && is_word_byte((unsigned char)text[w - 1])) w--;
    return text.substr(w);
}

size_t accepted_chars(std::string_view suggestion, std::string_view truth) {
    size_t i = 0;
    while (i < suggestion.size() && i < truth.size()) {
        const size_t n = unit_len(suggestion, i);
        if (unit_len(truth, i) != n || suggestion.substr(i, n) != truth.substr(i, n)) break;
        i += n;
    }
    return i;
}

bool runs_past(std::string_view suggestion) {
    return suggestion.find('\n') != std::string_view::npos || cloud::split_sentences(suggestion).size() > 1;
}

bool repeats_recent(std::string_view before, std::string_view suggestion, size_t n) {
    const std::vector<std::string> sentences = cloud::split_sentences(before);
    std::vector<std::string> seen;
    for (size_t k = sentences.size() > 2 ? sentences.size() - 2 : 0; k < sentences.size(); k++)
        for (auto& w : words(sentences[k])) seen.push_back(std::move(w));
    const std::vector<std::string> s = words(suggestion);
    const size_t from = seen.size();
    seen.insert(seen.end(), s.begin(), s.end());
    for (size_t i = from; i + n <= seen.size(); i++)  // each n-gram of the suggestion...
        for (size_t j = 0; j < i; j++)                 // ...against every earlier start
            if (std::equal(seen.begin() + (long)i, seen.begin() + (long)(i + n), seen.begin() + (long)j)) return true;
    return false;
}

bool glued_word(std::string_view before, std::string_view suggestion, const std::unordered_set<std::string>& dictionary) {
    const std::string_view partial = trailing_word(before);
    if (partial.empty() || suggestion.empty()) return false;
    const size_t lead = is_word_byte((unsigned char)suggestion[0]) ? unit_len(suggestion, 0) : 0;
    return dictionary.count(lower(std::string(partial) + std::string(suggestion.substr(0, lead)))) == 0;
}

void add_words(std::string_view text, std::unordered_set<std::string>& dictionary) {
    for (auto& w : words(text)) dictionary.insert(std::move(w));
}

}  // namespace tandem::eval
