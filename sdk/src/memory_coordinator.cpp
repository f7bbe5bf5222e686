// When to ask for memory (see memory_coordinator.h).
#include "memory_coordinator.h"

#include <algorithm>

namespace tandem {

static bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

std::vector<std::string> MemoryCoordinator::words(std::string_view text, size_t max_words) {
    std::vector<std::string> out;
    size_t i = text.size();
    // walk backwards so only the tail is split
    while (i > 0 && out.size() < max_words) {
        while (i > 0 && is_space(text[i - 1])) i--;
        size_t j = i;
        while (j > 0 && !is_space(text[j - 1])) j--;
        if (j < i) out.emplace_back(text.substr(j, i - j));
        i = j;
    }
    std::reverse(out.begin(), out.end());
    return out;
}

int MemoryCoordinator::edit_distance(const std::vector<std::string>& a, const std::vector<std::string>& b) {
    std::vector<int> prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); j++) prev[j] = (int)j;
    for (size_t i = 1; i <= a.size(); i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= b.size(); j++)
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

bool MemoryCoordinator::should_request(std::string_view window) {
    auto now = words(window, (size_t)window_words_);
    if ((int)now.size() < std::min(threshold_, 8)) return false;  // too little text to be about anything
    last_distance_ = have_last_ ? edit_distance(last_, now) : (int)now.size();
    if (have_last_ && last_distance_ < threshold_) return false;
    last_ = std::move(now);
    have_last_ = true;
    return true;
}

std::string MemoryCoordinator::context_of(std::string_view window) const {
    std::string out;
    for (const auto& w : words(window, (size_t)window_words_)) {
        if (!out.empty()) out += ' ';
        out += w;
    }
    return out;
}

}  // namespace tandem
