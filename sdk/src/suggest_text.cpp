// The rules that make a model continuation into ghost text (contract in tandem/suggest_text.h).
#include "tandem/suggest_text.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <stdexcept>

namespace tandem {

// ---- names -----------------------------------------------------------------------------------

const char* suggest_end_name(SuggestEnd e) {
    switch (e) {
        case SuggestEnd::sentence: return "sentence";
        case SuggestEnd::line: return "line";
        case SuggestEnd::paragraph: return "paragraph";
    }
    return "?";
}

SuggestEnd suggest_end_from_name(const std::string& name) {
    for (SuggestEnd e : {SuggestEnd::sentence, SuggestEnd::line, SuggestEnd::paragraph})
        if (name == suggest_end_name(e)) return e;
    throw std::invalid_argument("suggestion end '" + name + "' is not one of sentence, line, paragraph");
}

// ---- sentence ends ---------------------------------------------------------------------------

namespace {

bool is_word_byte(unsigned char c) { return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || c >= 0x80; }
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_end_punct(char c) { return c == '.' || c == '!' || c == '?'; }
bool is_closer(char c) { return c == '"' || c == '\'' || c == ')' || c == ']'; }

// Words after which a period does not end a sentence (lowercase, without the period).
bool is_abbreviation(std::string_view w) {
    static const char* const kAbbrev[] = {"mr", "mrs", "ms", "dr", "prof", "st", "mt", "no", "vs", "jr", "sr", "gen", "col", "rev"};
    std::string lower(w);
    for (char& c : lower) c = (char)std::tolower((unsigned char)c);
    for (const char* a : kAbbrev)
        if (lower == a) return true;
    return w.size() == 1 && std::isalpha((unsigned char)w[0]);  // an initial ("J."), "e.g.", "U.N."
}

// Whether the punctuation at text[i] ends a sentence, given that white space follows it (after
// any closers): "!" and "?" always; "." unless it ends an abbreviation or an initial.
bool ends_sentence_at(std::string_view text, size_t i) {
    if (text[i] != '.') return true;
    size_t w = i;
    while (w > 0 && std::isalpha((unsigned char)text[w - 1])) w--;
    return w == i || !is_abbreviation(text.substr(w, i - w));
}

// If a sentence ends at text[i] (punctuation, closers, then white space at j), returns j (the
// offset just after the closers); else npos, also when the text ends before the white space.
size_t sentence_end_after(std::string_view text, size_t i) {
    if (!is_end_punct(text[i])) return std::string_view::npos;
    size_t j = i + 1;
    while (j < text.size() && (is_closer(text[j]) || is_end_punct(text[j]))) j++;
    if (j >= text.size() || !is_space(text[j])) return std::string_view::npos;
    return ends_sentence_at(text, i) ? j : std::string_view::npos;
}

}  // namespace

size_t sentence_start(std::string_view text) {
    size_t start = 0;
    for (size_t i = 0; i < text.size(); i++) {
        if (text[i] == '\n') {
            start = i + 1;
        } else if (size_t j = sentence_end_after(text, i); j != std::string_view::npos) {
            start = j;
            i = j - 1;
        }
    }
    while (start < text.size() && is_space(text[start])) start++;
    return start;
}

// ---- the shaper ------------------------------------------------------------------------------

SuggestionShaper::SuggestionShaper(const Tokenizer& tok, std::vector<int32_t> prompt, std::string_view before,
                                   const SuggestRules& rules)
    : tok_(tok), rules_(rules), prompt_(std::move(prompt)) {
    context_.assign(before.substr(before.size() - std::min<size_t>(before.size(), 32)));

    // The no-repeat window: the prompt's tokens that spell the current and the previous
    // sentence (never more than `before` spells: the notes ahead of the window stay out).
    const size_t cur = sentence_start(before);
    std::string_view prev = before.substr(0, cur);
    while (!prev.empty() && is_space(prev.back())) prev.remove_suffix(1);
    const size_t span = before.size() - sentence_start(prev);
    std::string tail;
    window_from_ = prompt_.size();
    while (window_from_ > 0 && tail.size() < span) {
        const std::string& b = tok_.token_bytes(prompt_[window_from_ - 1]);
        if (b.empty() || before.size() < tail.size() + b.size() ||
            before.compare(before.size() - tail.size() - b.size(), b.size(), b) != 0)
            break;
        tail.insert(0, b);
        window_from_--;
    }

    // Token healing: drop the tokens that spell the partial word (or the spaces) at the cursor
    // (at most 8 tokens and 48 bytes), keeping at least one text token so that the stream
    // continues text.
    if (!rules_.complete_words || before.empty()) return;
    const bool in_word = is_word_byte((unsigned char)before.back());
    if (!in_word && before.back() != ' ') return;
    size_t w = before.size();
    while (w > 0 && (in_word ? is_word_byte((unsigned char)before[w - 1]) : before[w - 1] == ' ')) w--;
    const size_t partial = before.size() - w;
    if (partial > 48) return;
    std::string r;
    size_t k = prompt_.size();
    while (k > 0 && r.size() < partial && prompt_.size() - k < 8) {
        const std::string& b = tok_.token_bytes(prompt_[k - 1]);
        if (b.empty()) break;
        r.insert(0, b);
        k--;
    }
    if (r.size() < partial || before.size() < r.size() || before.compare(before.size() - r.size(), r.size(), r) != 0) return;
    if (((unsigned char)r[0] & 0xC0) == 0x80) return;  // starts inside a UTF-8 sequence
    bool text_left = false;
    for (size_t i = 0; i < k && !text_left; i++) text_left = !tok_.token_bytes(prompt_[i]).empty();
    if (!text_left) return;
    prompt_.resize(k);
    window_from_ = std::min(window_from_, k);
    respell_ = std::move(r);
    in_word_ = in_word;
    to_skip_ = respell_.size();
}

// How token `id` fits the rest of the respelling: 2 it covers all of it (and, after spaces,
// goes on), 1 it spells a proper prefix of it, 0 neither.
int SuggestionShaper::respell_fit(int32_t id, std::string_view rest) const {
    const std::string& b = tok_.token_bytes(id);
    if (b.empty()) return 0;
    if (b.compare(0, rest.size(), rest) == 0) return in_word_ || b.size() > rest.size() ? 2 : 0;
    return b.size() < rest.size() && rest.compare(0, b.size(), b) == 0 ? 1 : 0;
}

void SuggestionShaper::filter(float* logits, int64_t n_logits, const std::vector<int32_t>& generated) const {
    const int32_t n_vocab = (int32_t)std::min<int64_t>(n_logits, (int64_t)tok_.n_tokens());
    std::string bytes;
    for (int32_t id : generated) bytes += tok_.token_bytes(id);

    if (bytes.size() < respell_.size()) {
        // Still spelling the partial word: a token that covers the rest of it (the model then
        // finishes the word in one piece: " internat" -> " international"), or, when none
        // does, one that spells a prefix of the rest.
        const std::string_view rest = std::string_view(respell_).substr(bytes.size());
        std::vector<char> fit((size_t)n_vocab);
        int best = 0;
        for (int32_t id = 0; id < n_vocab; id++) best = std::max(best, (int)(fit[(size_t)id] = (char)respell_fit(id, rest)));
        if (best == 0) return;
        for (int32_t id = 0; id < n_vocab; id++)
            if (fit[(size_t)id] != best) logits[id] = -INFINITY;
        return;
    }
    if (bytes.size() == respell_.size()) {  // the first token that shows
        const bool word_done = in_word_ && !respell_.empty();  // the respelling ended with the word
        for (int32_t id = 0; id < n_vocab; id++) {
            const std::string& b = tok_.token_bytes(id);
            if (b.empty()) continue;
            // Never a line break first (after a finished sentence: the next one).
            if (rules_.end != SuggestEnd::paragraph && (b[0] == '\n' || b[0] == '\r')) logits[id] = -INFINITY;
            // A word the model spelled to its end is complete: no letters glued onto it.
            if (word_done && is_word_byte((unsigned char)b[0])) logits[id] = -INFINITY;
        }
    }
    // No repeated n-gram: the tokens that would complete one already in the window.
    const size_t n = rules_.no_repeat_ngram > 1 ? (size_t)rules_.no_repeat_ngram : 0;
    if (n == 0) return;
    std::vector<int32_t> seq(prompt_.begin() + (long)window_from_, prompt_.end());
    seq.insert(seq.end(), generated.begin(), generated.end());
    if (seq.size() < n) return;
    const size_t key = seq.size() - (n - 1);  // seq[key..] is the n-1 tokens the next one follows
    for (size_t i = 0; i < key; i++)  // an earlier n-gram whose first n-1 tokens are those
        if (std::equal(seq.begin() + (long)i, seq.begin() + (long)(i + n - 1), seq.begin() + (long)key) &&
            seq[i + n - 1] >= 0 && seq[i + n - 1] < n_vocab)
            logits[seq[i + n - 1]] = -INFINITY;
}

bool SuggestionShaper::push(std::string_view piece, std::string& out) {
    if (ended_) return false;
    const size_t skip = std::min(to_skip_, piece.size());
    piece.remove_prefix(skip);
    to_skip_ -= skip;
    held_ += piece;
    if (rules_.end == SuggestEnd::paragraph) {
        out += held_;
        held_.clear();
        return true;
    }
    // Where the suggestion ends: before a line break, or after a sentence end.
    size_t cut = held_.find_first_of("\r\n");
    if (rules_.end == SuggestEnd::sentence) {
        const std::string text = context_ + held_;  // abbreviations look back into the document
        for (size_t i = context_.size(); i < text.size() && i - context_.size() < cut; i++)
            if (size_t j = sentence_end_after(text, i); j != std::string::npos) {
                cut = std::min(cut, j - context_.size());
                break;
            }
    }
    if (cut != std::string::npos) {
        std::string shown = held_.substr(0, cut);
        while (!shown.empty() && is_space(shown.back())) shown.pop_back();
        out += shown;
        held_.clear();
        ended_ = true;
        return false;
    }
    // Hold back a punctuation mark (and closers) at the end: the next piece decides.
    size_t hold = held_.size();
    if (rules_.end == SuggestEnd::sentence) {
        size_t k = held_.size();
        while (k > 0 && (is_closer(held_[k - 1]) || is_end_punct(held_[k - 1]))) k--;
        if (k < held_.size()) hold = k;
    }
    out.append(held_, 0, hold);
    context_ += held_.substr(0, hold);
    if (context_.size() > 64) context_.erase(0, context_.size() - 64);
    held_.erase(0, hold);
    return true;
}

void SuggestionShaper::finish(std::string& out) {
    if (ended_) return;
    out += held_;
    held_.clear();
    ended_ = true;
}

// ---- generation ------------------------------------------------------------------------------

Generation generate_suggestion(Engine& engine, const std::vector<int32_t>& prompt, std::string_view before,
                               GenerateParams params, const SuggestRules& rules, const PieceCallback& on_piece) {
    SuggestionShaper shaper(engine.tokenizer(), prompt, before, rules);
    if (rules.end == SuggestEnd::paragraph) params.stop.push_back("\n\n");
    params.max_tokens += (int)(prompt.size() - shaper.prompt().size());  // the respelled tokens are free
    params.logit_filter = [&shaper](float* logits, int64_t n_vocab, const std::vector<int32_t>& generated) {
        shaper.filter(logits, n_vocab, generated);
    };
    std::string text;
    bool caller_stopped = false;
    auto show = [&](const std::string& s) {
        if (s.empty()) return true;
        text += s;
        if (on_piece && !on_piece(s)) caller_stopped = true;
        return !caller_stopped;
    };
    Generation g = engine.generate_tokens(shaper.prompt(), params, [&](std::string_view piece) {
        std::string out;
        const bool more = shaper.push(piece, out);
        return show(out) && more;
    });
    if (g.finish != FinishReason::Cancelled && !shaper.ended()) {
        std::string out;
        shaper.finish(out);
        show(out);
    } else if (shaper.ended() && !caller_stopped) {
        g.finish = FinishReason::Stop;
    }
    g.text = std::move(text);
    return g;
}

}  // namespace tandem
