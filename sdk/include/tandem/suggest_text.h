// How Assistant::suggest() turns the local model's continuation into ghost text a writer would
// accept. Exposed so that evaluations generate exactly the product's suggestions
// (bench/hybrid_eval); not part of the installed C++ API.
//
//   rule                 what it does
//   where it ends        SuggestEnd::sentence (default): after the end of the sentence the
//                        suggestion completes (. ! ? and any closing quotes or brackets, then
//                        white space; not after an abbreviation such as "Mr." or "e.g.", an
//                        initial such as "J." or a number's point) and before any line break.
//                        SuggestEnd::line: before a line break. SuggestEnd::paragraph: before a
//                        blank line. The token limit is only a cap.
//   the word at the      when the text before the cursor ends inside a word (a letter, digit or
//   cursor               non-ASCII byte last), the prompt leaves out the tokens that spell that
//                        partial word and the first generated tokens must spell it again
//                        ("token healing"), preferring a token that covers all of it (the model
//                        finishes the word in one piece: "internat" -> "international"). The
//                        ghost text is what follows: the rest of the word, or, when the model
//                        spells the word to its end, a space or punctuation and what comes next
//                        (never more letters glued onto it). Without it the
//                        model sees an odd tokenization of a half word and often starts a new
//                        word glued to it ("peac" + " and"). Trailing spaces are healed the same
//                        way: after "on " the model writes " combating" (its words carry their
//                        space) and the ghost shows "combating", where a prompt ending in a bare
//                        space token gets odd continuations.
//   no line break first  (sentence and line ends) the suggestion never starts with a line break:
//                        after a finished sentence it offers the next sentence.
//   no repeats           no run of no_repeat_ngram tokens that occurs in the current sentence,
//                        the sentence before it or the suggestion so far is generated again
//                        (the small models otherwise loop: "The United Nations is facing a
//                        crisis of confidence. The United Nations is facing a crisis of ...").
//
// Thread safety: a SuggestionShaper serves one generation (one thread); the free functions
// are thread-safe.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/engine.h"
#include "tandem/tokenizer.h"

namespace tandem {

enum class SuggestEnd { sentence, line, paragraph };
// "sentence" | "line" | "paragraph"; suggest_end_from_name throws std::invalid_argument
// naming the valid values.
const char* suggest_end_name(SuggestEnd e);
SuggestEnd suggest_end_from_name(const std::string& name);

struct SuggestRules {
    SuggestEnd end = SuggestEnd::sentence;
    bool complete_words = true;  // token healing of the word at the cursor
    int no_repeat_ngram = 5;     // tokens; 0: off (5: bench/results/suggestions.md)
};

// The byte offset in `text` where the sentence that contains its end begins (0 when none
// ended before): just after the last sentence end (see above) or line break.
size_t sentence_start(std::string_view text);

// One suggestion's rules, for one prompt.
class SuggestionShaper {
public:
    // prompt: the suggestion's prompt, whose last tokens spell the end of `before` (the text
    // before the cursor), as build_suggest_prompt() makes it. `tok` must outlive the shaper.
    SuggestionShaper(const Tokenizer& tok, std::vector<int32_t> prompt, std::string_view before, const SuggestRules& rules);

    // The prompt to evaluate: the given one less the tokens of the partial word.
    const std::vector<int32_t>& prompt() const { return prompt_; }
    // The bytes the generation must begin with (the partial word's tokens; "" when none).
    const std::string& respell() const { return respell_; }

    // GenerateParams::logit_filter: bans the tokens the rules forbid at this step (never all).
    void filter(float* logits, int64_t n_vocab, const std::vector<int32_t>& generated) const;

    // Takes one streamed piece of the generation and appends to `out` the ghost text that is
    // ready to show (the respelled part dropped; a possible sentence end held back until the
    // next piece says whether it is one). Returns false once the suggestion has ended: stop
    // generating, and do not call push() again.
    bool push(std::string_view piece, std::string& out);
    // The generation ended (length, end of text): appends what push() held back.
    void finish(std::string& out);
    bool ended() const { return ended_; }

private:
    int respell_fit(int32_t id, std::string_view rest) const;

    const Tokenizer& tok_;
    SuggestRules rules_;
    std::vector<int32_t> prompt_;
    std::string respell_;
    bool in_word_ = false;       // respell_ is a partial word (else spaces)
    size_t window_from_ = 0;     // prompt_[window_from_..] is the no-repeat window's prompt part
    std::string context_;        // the end of `before` (abbreviation checks look back into it)
    size_t to_skip_ = 0;         // respelled bytes still to drop from the stream
    std::string held_;           // ghost text not shown yet
    bool ended_ = false;
};

// Generates a suggestion: engine.generate_tokens() of the shaper's prompt with its filter, the
// pieces passed through it. The result's text is the ghost text (what on_piece got);
// finish is Stop when the rules ended it. `params` gives the cap, sampling and stop strings
// (SuggestEnd::paragraph adds the stop "\n\n"); its logit_filter is replaced.
Generation generate_suggestion(Engine& engine, const std::vector<int32_t>& prompt, std::string_view before,
                               GenerateParams params, const SuggestRules& rules, const PieceCallback& on_piece = {});

}  // namespace tandem
