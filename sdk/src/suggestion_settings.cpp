// AssistantConfig -> a suggestion's generation settings (see suggestion_settings.h).
#include "suggestion_settings.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace tandem {

SuggestionSettings suggestion_settings(const AssistantConfig& cfg) {
    auto bad = [](const std::string& field, const std::string& why) {
        return std::invalid_argument("AssistantConfig." + field + " " + why);
    };
    SuggestionSettings s;
    if (cfg.suggestion_tokens < 1) throw bad("suggestion_tokens", "must be >= 1");
    try {
        s.rules.end = suggest_end_from_name(cfg.suggestion_end);
    } catch (const std::invalid_argument& e) {
        throw bad("suggestion_end", std::string("is wrong: ") + e.what());
    }
    if (cfg.suggestion_no_repeat_ngram < 0 || cfg.suggestion_no_repeat_ngram == 1)
        throw bad("suggestion_no_repeat_ngram", "must be 0 (off) or >= 2");
    if (!(cfg.suggestion_temperature >= 0) || !std::isfinite(cfg.suggestion_temperature))
        throw bad("suggestion_temperature", "must be >= 0");
    if (!(cfg.suggestion_top_p > 0 && cfg.suggestion_top_p <= 1)) throw bad("suggestion_top_p", "must be in (0, 1]");
    for (const std::string& stop : cfg.suggestion_stop)
        if (stop.empty()) throw bad("suggestion_stop", "must not hold an empty string");
    s.rules.complete_words = cfg.suggestion_complete_words;
    s.rules.no_repeat_ngram = cfg.suggestion_no_repeat_ngram;
    s.params.max_tokens = cfg.suggestion_tokens;
    s.params.stop = cfg.suggestion_stop;
    s.params.sampling.temperature = (float)cfg.suggestion_temperature;
    s.params.sampling.top_k = cfg.suggestion_top_k;
    s.params.sampling.top_p = (float)cfg.suggestion_top_p;
    s.params.sampling.seed = cfg.suggestion_seed;
    return s;
}

}  // namespace tandem
