// How Assistant::suggest() assembles its prompt: which memory notes (retrieval parameters and
// the text they are retrieved for) and the token layout. Exposed so that evaluations build
// exactly the product's prompt (bench/hybrid_eval); not part of the installed C++ API.
//
//   prompt = [BOS] note 1 \n note 2 \n ... \n \n <document window>      (no notes: no block)
//
// The window is the end of the text before the cursor; it starts at a remembered offset
// (*window_start) that moves only when the window outgrows its budget, so that consecutive
// keystrokes share their whole prompt prefix (KV reuse). Every cut of the text is a named
// limit of tandem/document_window.h.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/memory_store.h"
#include "tandem/tokenizer.h"

namespace tandem {

// Retrieval limits for a suggestion's notes: at most max_items notes costing at most
// budget_tokens tokens of `tok` (a note costs its tokens + 1 for its line break). The returned
// cost function refers to `tok`, which must outlive it.
RetrieveParams suggest_retrieve_params(size_t max_items, size_t budget_tokens, const Tokenizer& tok);

// The text memory is retrieved for: DocumentWindow(before).retrieval_text(), the last
// 2000 bytes before the cursor (a view into it).
std::string_view suggest_retrieval_window(std::string_view before);

// The prompt for `before` (the text before the cursor) with `notes` (best first, one a line).
// reserve_tokens: tokens kept free after the prompt (the suggestion's length). The window's
// budget is n_ctx - prompt head - reserve_tokens - 8 tokens: its text is
// DocumentWindow::prompt_text(budget, window_start) (the start moves forward to half the
// budget, at a word start, when the window is over budget, and back to 0 when `before` got
// shorter than it), then cut to its last `budget` tokens. *window_start: in/out, the window's
// start offset in `before` (0 for a fresh document).
// Throws std::runtime_error when n_ctx leaves fewer than 16 tokens for the window.
std::vector<int32_t> build_suggest_prompt(const Tokenizer& tok, const std::vector<std::string>& notes,
                                          std::string_view before, int64_t n_ctx, int reserve_tokens,
                                          size_t* window_start);

}  // namespace tandem
