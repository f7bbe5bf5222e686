// The suggestion's prompt planner: document window + memory notes + token budget -> prompt
// tokens, in the layout of tandem/suggest_prompt.h. Internal to the SDK.
//
// The planner remembers where the document window starts (it moves only when the window
// outgrows its budget, so consecutive keystrokes share their prompt prefix) and says which
// notes fit: retrieval limits in tokens of the model's tokenizer.
//
// Thread safety: plan() changes the window start and must be serialized by the caller (the
// Assistant's foreground lock); the const methods may run beside it.
#pragma once
#include <atomic>
#include <cstdint>
#include <string_view>
#include <vector>

#include "tandem/assistant.h"
#include "tandem/document_window.h"
#include "tandem/memory_store.h"
#include "tandem/tokenizer.h"

namespace tandem {

class SuggestPlanner {
public:
    explicit SuggestPlanner(const AssistantConfig& cfg);

    // The text before the cursor with the Assistant's limits (request_words from
    // AssistantConfig::memory_window_words, the others the defaults).
    DocumentWindow window(std::string_view before) const { return DocumentWindow(before, limits_); }

    // The prompt for `before` (the text before the cursor) with `notes`, best first. Moves the
    // window start when the window is over budget. Throws std::runtime_error when n_ctx is too
    // small for the notes and the suggestion.
    std::vector<int32_t> plan(const Tokenizer& tok, const std::vector<MemoryItem>& notes, std::string_view before);
    // The same prompt from the window start `window_start`, leaving the planner's as it is
    // (the background builds the prompt the next keystroke will have).
    std::vector<int32_t> plan_at(const Tokenizer& tok, const std::vector<MemoryItem>& notes, std::string_view before,
                                 size_t window_start) const;
    size_t window_start() const { return window_start_.load(); }

    // Which notes the prompt takes: retrieved for window(before).retrieval_text(), within these
    // limits.
    RetrieveParams retrieve_params(const Tokenizer& tok) const;

private:
    std::vector<int32_t> build(const Tokenizer& tok, const std::vector<MemoryItem>& notes, std::string_view before,
                               size_t* window_start) const;

    DocumentWindowLimits limits_;
    int64_t n_ctx_;
    int suggestion_tokens_, memory_max_items_, memory_budget_tokens_;
    std::atomic<size_t> window_start_{0};  // offset of the window in the text before the cursor
};

}  // namespace tandem
