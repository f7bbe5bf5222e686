// suggest()'s prompt assembly (see tandem/suggest_prompt.h).
#include "tandem/suggest_prompt.h"

#include <stdexcept>

#include "tandem/document_window.h"

namespace tandem {

RetrieveParams suggest_retrieve_params(size_t max_items, size_t budget_tokens, const Tokenizer& tok) {
    RetrieveParams rp;
    rp.max_items = max_items;
    rp.budget = budget_tokens;
    rp.cost = [&tok](std::string_view t) { return tok.encode(t, false).size() + 1; };
    return rp;
}

std::string_view suggest_retrieval_window(std::string_view before) { return DocumentWindow(before).retrieval_text(); }

std::vector<int32_t> build_suggest_prompt(const Tokenizer& tok, const std::vector<std::string>& notes,
                                          std::string_view before, int64_t n_ctx, int reserve_tokens,
                                          size_t* window_start) {
    std::string block;
    for (const auto& n : notes) block += n + "\n";
    if (!block.empty()) block += "\n";
    std::vector<int32_t> ids;
    if (tok.add_bos() && tok.bos() >= 0) ids.push_back(tok.bos());
    if (!block.empty()) tok.encode(block, false, ids);
    const int64_t budget = n_ctx - (int64_t)ids.size() - reserve_tokens - 8;
    if (budget < 16) throw std::runtime_error("n_ctx is too small for the memory budget and suggestion length");
    std::vector<int32_t> win = tok.encode(DocumentWindow(before).prompt_text(budget, window_start), false);
    if ((int64_t)win.size() > budget) win.erase(win.begin(), win.end() - budget);
    ids.insert(ids.end(), win.begin(), win.end());
    return ids;
}

}  // namespace tandem
