// The document window's cuts (see tandem/document_window.h).
#include "tandem/document_window.h"

#include <algorithm>

namespace tandem {

static bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

std::vector<std::string> DocumentWindow::tail_words(std::string_view text, size_t max_words) {
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

std::vector<std::string> DocumentWindow::request_words() const {
    return tail_words(before_, (size_t)std::max(0, limits_.request_words));
}

std::string DocumentWindow::request_context() const {
    std::string out;
    for (const auto& w : request_words()) {
        if (!out.empty()) out += ' ';
        out += w;
    }
    return out;
}

std::string_view DocumentWindow::prompt_text(int64_t budget_tokens, size_t* start) const {
    const size_t budget_bytes = (size_t)std::max<int64_t>(0, budget_tokens) * limits_.min_bytes_per_token;
    size_t& s = *start;
    if (s > before_.size() || before_.size() - s > budget_bytes) {
        size_t n = before_.size() > budget_bytes / 2 ? before_.size() - budget_bytes / 2 : 0;
        while (n > 0 && n < before_.size() && before_[n - 1] != ' ' && before_[n - 1] != '\n') n++;
        s = n;
    }
    return before_.substr(s);
}

}  // namespace tandem
