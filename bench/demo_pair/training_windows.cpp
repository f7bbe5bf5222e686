// Training windows and the notes block layout (see training_windows.h).
#include "training_windows.h"

#include <stdexcept>

#include "tandem/suggest_prompt.h"

namespace tandem::demo {

std::vector<TextWindow> cut_windows(const std::string& text, const std::vector<eval::SentenceSpan>& spans,
                                    const Tokenizer& tok, size_t max_tokens, size_t max_chars) {
    if (max_tokens == 0 || max_chars == 0) throw std::invalid_argument("cut_windows: max_tokens and max_chars must be > 0");
    std::vector<TextWindow> out;
    size_t i = 0;
    while (i < spans.size()) {
        const size_t begin = spans[i].begin;
        size_t j = i;  // the last whole sentence in the window
        while (j + 1 < spans.size() && spans[j + 1].end - begin <= max_chars) j++;
        TextWindow w;
        w.begin = begin;
        w.tokens = tok.encode(std::string_view(text).substr(begin, spans[j].end - begin), false);
        if (w.tokens.size() > max_tokens) w.tokens.resize(max_tokens);
        size_t bytes = 0;
        for (int32_t t : w.tokens) bytes += tok.token_bytes(t).size();
        w.end = begin + bytes;
        out.push_back(std::move(w));
        // Next: the first sentence not read whole (the one the cut fell in), else the one after
        // the window; never this window's first sentence again.
        size_t next = j + 1;
        for (size_t s = i + 1; s <= j; s++)
            if (spans[s].end > out.back().end) {
                next = s;
                break;
            }
        i = next;
    }
    return out;
}

std::vector<int32_t> notes_block_tokens(const Tokenizer& tok, const std::vector<std::string>& notes) {
    size_t window_start = 0;
    // No document text and room for anything: the prompt is [BOS] + the block.
    std::vector<int32_t> p = build_suggest_prompt(tok, notes, "", 1 << 20, 0, &window_start);
    const size_t head = tok.add_bos() && tok.bos() >= 0 ? 1 : 0;
    return std::vector<int32_t>(p.begin() + (long)head, p.end());
}

std::vector<std::string> select_notes(const Tokenizer& tok, const std::vector<std::string>& candidates,
                                      size_t max_items, size_t budget_tokens) {
    const RetrieveParams rp = suggest_retrieve_params(max_items, budget_tokens, tok);
    std::vector<std::string> out;
    size_t used = 0;
    for (const std::string& c : candidates) {
        if (out.size() >= rp.max_items) break;
        const size_t cost = rp.cost(c);
        if (used + cost > rp.budget) continue;
        used += cost;
        out.push_back(c);
    }
    return out;
}

std::vector<int32_t> join_notes(const std::vector<std::vector<int32_t>>& note_tokens, size_t k,
                                const std::vector<int32_t>& newline, const std::vector<int32_t>& blank_line) {
    std::vector<int32_t> out;
    for (size_t i = 0; i < k && i < note_tokens.size(); i++) {
        out.insert(out.end(), note_tokens[i].begin(), note_tokens[i].end());
        const std::vector<int32_t>& sep = i + 1 == k ? blank_line : newline;
        out.insert(out.end(), sep.begin(), sep.end());
    }
    return out;
}

size_t notes_layout_exact(const Tokenizer& tok, const std::vector<std::string>& notes) {
    const std::vector<int32_t> newline = tok.encode("\n", false), blank_line = tok.encode("\n\n", false);
    std::vector<std::vector<int32_t>> enc;
    for (const std::string& n : notes) enc.push_back(tok.encode(n, false));
    for (size_t k = 1; k <= notes.size(); k++) {
        const std::vector<std::string> first(notes.begin(), notes.begin() + (long)k);
        if (join_notes(enc, k, newline, blank_line) != notes_block_tokens(tok, first)) return k - 1;
    }
    return notes.size();
}

}  // namespace tandem::demo
