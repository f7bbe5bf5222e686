// What makes ghost text acceptable to a writer, measured against what the writer really wrote
// next (bench-suggestions). Sentences are the reference cloud's split_sentences(), as for the
// drafts, so the measure does not share the SDK's own sentence rule.
//
//   unit               a run of word bytes (ASCII letters and digits, bytes >= 0x80) or one other
//                      byte; the writer takes a suggestion unit by unit (word by word)
//   accepted_chars     the bytes of the suggestion's leading units that equal the truth's
//                      (the whole suggestion when it is all right)
//   runs_past          the suggestion holds a line break or more than one sentence
//   repeats_recent     a run of n words of the suggestion occurs in the last two sentences before
//                      the cursor or earlier in the suggestion (words lowercased)
//   glued_word         the cursor is inside a word and the suggestion does not complete it: the
//                      partial word plus the suggestion's leading word bytes is not a dictionary
//                      word, or the suggestion starts a new word while the partial one is none
#pragma once
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace tandem::eval {

// The word bytes at the end of `text` ("" when it ends with another byte).
std::string_view trailing_word(std::string_view text);

size_t accepted_chars(std::string_view suggestion, std::string_view truth);
bool runs_past(std::string_view suggestion);
bool repeats_recent(std::string_view before, std::string_view suggestion, size_t n = 5);
bool glued_word(std::string_view before, std::string_view suggestion, const std::unordered_set<std::string>& dictionary);

// Adds the lowercased words of `text` (runs of word bytes) to `dictionary`.
void add_words(std::string_view text, std::unordered_set<std::string>& dictionary);

}  // namespace tandem::eval
