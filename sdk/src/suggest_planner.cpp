// The suggestion's prompt planner (see suggest_planner.h).
#include "suggest_planner.h"

#include "tandem/suggest_prompt.h"

namespace tandem {

SuggestPlanner::SuggestPlanner(const AssistantConfig& cfg)
    : n_ctx_(cfg.n_ctx),
      suggestion_tokens_(cfg.suggestion_tokens),
      memory_max_items_(cfg.memory_max_items),
      memory_budget_tokens_(cfg.memory_budget_tokens) {
    limits_.request_words = cfg.memory_window_words;
}

std::vector<int32_t> SuggestPlanner::plan(const Tokenizer& tok, const std::vector<MemoryItem>& notes, std::string_view before) {
    size_t start = window_start_.load();
    std::vector<int32_t> prompt = build(tok, notes, before, &start);
    window_start_.store(start);
    return prompt;
}

std::vector<int32_t> SuggestPlanner::plan_at(const Tokenizer& tok, const std::vector<MemoryItem>& notes, std::string_view before,
                                             size_t window_start) const {
    return build(tok, notes, before, &window_start);
}

std::vector<int32_t> SuggestPlanner::build(const Tokenizer& tok, const std::vector<MemoryItem>& notes, std::string_view before,
                                           size_t* window_start) const {
    std::vector<std::string> texts;
    for (const auto& n : notes) texts.push_back(n.text);
    return build_suggest_prompt(tok, texts, before, n_ctx_, suggestion_tokens_, window_start);
}

RetrieveParams SuggestPlanner::retrieve_params(const Tokenizer& tok) const {
    return suggest_retrieve_params((size_t)memory_max_items_, (size_t)memory_budget_tokens_, tok);
}

}  // namespace tandem
