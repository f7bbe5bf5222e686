// A suggestion's generation settings, from AssistantConfig's suggestion_* fields. Internal to
// the SDK.
#pragma once
#include "tandem/assistant.h"
#include "tandem/engine.h"
#include "tandem/suggest_text.h"

namespace tandem {

struct SuggestionSettings {
    GenerateParams params;  // cap, sampling, stop strings
    SuggestRules rules;     // where it ends, the word at the cursor, no repeats
};

// Throws std::invalid_argument naming the AssistantConfig field that is out of range.
SuggestionSettings suggestion_settings(const AssistantConfig& cfg);

}  // namespace tandem
