// The document window: every cut the SDK makes of the writer's text before the cursor, named
// and in one place. Exposed so that evaluations see exactly what the product sees
// (bench/hybrid_eval); not part of the installed C++ API.
//
//   limit                  default  what it bounds                          why
//   ---------------------  -------  --------------------------------------  ----------------------------------------
//   retrieval_bytes        2000     the text a suggestion's notes are       FTS5 searches the window's rarest words;
//                                   retrieved for (its last bytes)          the last ~350 words are what the
//                                                                           suggestion continues
//   listing_bytes          4000     the text Assistant::memory_notes()      a list for the writer: a wider net than
//                                   retrieves for                           the prompt's
//   request_words          300      a memory request's context, and the     AssistantConfig::memory_window_words:
//                                   text the coordinator measures edits on  the cloud writes notes for the topic
//                                                                           near the cursor
//   min_bytes_per_token    3        the prompt window's first cut, in       tokenizing a whole long document on
//                                   bytes, from its token budget; it is     every keystroke would cost more than
//                                   then cut to the budget exactly in       the suggestion; English BPE averages
//                                   tokens                                  ~4 bytes a token, rarely under 3
//   bytes_per_token_estimate 4      token counts where no tokenizer runs:   the cloud's tokenizer is not known
//                                   a cloud ask (usage, the router's        here; ~4 bytes a token for English
//                                   budget)
//
// Byte cuts may split a UTF-8 sequence: retrieval and the coordinator treat an invalid byte as
// a separator, and the prompt window starts at a word start (after ' ' or '\n').
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tandem {

struct DocumentWindowLimits {
    size_t retrieval_bytes = 2000;
    size_t listing_bytes = 4000;
    int request_words = 300;  // the Assistant sets it from AssistantConfig::memory_window_words
    size_t min_bytes_per_token = 3;
    size_t bytes_per_token_estimate = 4;
};

// A view of the text before the cursor (which must outlive it) with the limits above.
class DocumentWindow {
public:
    explicit DocumentWindow(std::string_view before, const DocumentWindowLimits& limits = {})
        : before_(before), limits_(limits) {}

    std::string_view before() const { return before_; }
    const DocumentWindowLimits& limits() const { return limits_; }

    // The last retrieval_bytes: what a suggestion's notes are retrieved for.
    std::string_view retrieval_text() const { return tail_bytes(limits_.retrieval_bytes); }
    // The last listing_bytes: what Assistant::memory_notes() retrieves for.
    std::string_view listing_text() const { return tail_bytes(limits_.listing_bytes); }

    // The last request_words words (split at ' ', '\n', '\t', '\r'), in text order.
    std::vector<std::string> request_words() const;
    // request_words() joined by single spaces: the context a memory request carries.
    std::string request_context() const;

    // The prompt's document text for a budget of `budget_tokens` tokens, starting at *start
    // (in/out: 0 for a fresh document). The start stays where it is while the text from it fits
    // budget_tokens x min_bytes_per_token bytes, so that consecutive keystrokes share their
    // prompt prefix; past that it moves forward to leave half of that (at a word start), and
    // back when the text got shorter than *start. The caller cuts the result's tokens to the
    // budget.
    std::string_view prompt_text(int64_t budget_tokens, size_t* start) const;

    // The last `max_words` words of `text` (the split request_words() uses).
    static std::vector<std::string> tail_words(std::string_view text, size_t max_words);

private:
    std::string_view tail_bytes(size_t n) const { return before_.substr(before_.size() > n ? before_.size() - n : 0); }

    std::string_view before_;
    DocumentWindowLimits limits_;
};

// Estimated tokens of `bytes` bytes of text where no tokenizer runs: bytes /
// limits.bytes_per_token_estimate.
inline int64_t estimate_tokens(size_t bytes, const DocumentWindowLimits& limits = {}) {
    return (int64_t)(bytes / limits.bytes_per_token_estimate);
}

}  // namespace tandem
