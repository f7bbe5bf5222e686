// The demo client's training examples (bench/demo_pair): windows of a speech that start at a
// sentence, as the SDK's document window does in the evaluation's drafts, and the notes block
// of the SDK's suggest prompt (tandem/suggest_prompt.h), stored as per-note tokens that the
// training script joins back into exactly the block build_suggest_prompt produces:
//
//   example = [BOS] note 1 <newline> note 2 <newline> ... note k <blank line> window tokens
//             (no notes: [BOS] window tokens)
//
// where <newline> = encode("\n") and <blank line> = encode("\n\n"), each note encoded alone.
// notes_layout_exact() checks that this join equals build_suggest_prompt's block.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "drafts.h"  // eval::SentenceSpan
#include "tandem/tokenizer.h"

namespace tandem::demo {

// A window: text[begin, end) encoded alone is `tokens` (end is where the last token ends).
struct TextWindow {
    size_t begin = 0, end = 0;
    std::vector<int32_t> tokens;
};

// Windows of at most max_tokens tokens that cover the whole text: each starts at a sentence
// (spans: its sentences in order), is encoded from at most max_chars of whole sentences (at
// least one) and cut to max_tokens; the next starts at the sentence the cut fell in (so the
// cut sentence is read whole by the next window), or at the first sentence after the window.
// Throws std::invalid_argument for max_tokens == 0 or max_chars == 0.
std::vector<TextWindow> cut_windows(const std::string& text, const std::vector<eval::SentenceSpan>& spans,
                                    const Tokenizer& tok, size_t max_tokens, size_t max_chars);

// The tokens build_suggest_prompt puts between BOS and the document for `notes` (none: empty).
std::vector<int32_t> notes_block_tokens(const Tokenizer& tok, const std::vector<std::string>& notes);

// The notes of `candidates` (best first) that suggest() would keep: at most max_items, each
// costing its tokens + 1 (suggest_retrieve_params), taken in rank order while they fit in
// budget_tokens (one that does not fit is skipped, a later smaller one may still fit).
std::vector<std::string> select_notes(const Tokenizer& tok, const std::vector<std::string>& candidates,
                                      size_t max_items, size_t budget_tokens);

// The joined layout above for notes [0, k), from per-note tokens.
std::vector<int32_t> join_notes(const std::vector<std::vector<int32_t>>& note_tokens, size_t k,
                                const std::vector<int32_t>& newline, const std::vector<int32_t>& blank_line);

// The largest k <= notes.size() such that for every j in 1..k, join_notes(encoded notes, j)
// equals notes_block_tokens(notes[0, j)): how many notes the training script may use.
size_t notes_layout_exact(const Tokenizer& tok, const std::vector<std::string>& notes);

}  // namespace tandem::demo
