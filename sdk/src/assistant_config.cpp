// AssistantConfig from a JSON file (every field optional except model_path; unknown fields
// and wrong types are errors that name the file and the field), and UsageTotals as JSON.
#include <climits>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "tandem/assistant.h"
#include "tandem/json_int.h"

namespace tandem {

namespace {

struct BadValue : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A JSON integer within [lo, hi]; a float (even 3.0), a string or one out of range is refused.
int64_t integer_in(const nlohmann::json& v, int64_t lo, int64_t hi) {
    const std::string range = "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
    if (!v.is_number()) throw BadValue("has the wrong type (" + std::string(v.type_name()) + "): must be " + range);
    const std::optional<int64_t> x = json_int_in(v, lo, hi);
    if (!x) throw BadValue("must be " + range);
    return *x;
}

}  // namespace

AssistantConfig AssistantConfig::from_json_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error(path + ": cannot open config file");
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(in);
    } catch (const std::exception& e) {
        throw std::runtime_error(path + ": not valid JSON: " + e.what());
    }
    if (!j.is_object()) throw std::runtime_error(path + ": the config must be a JSON object");
    AssistantConfig c;
    // A setter throws nlohmann's type_error for a value of the wrong JSON type, or BadValue with
    // the reason. Numbers are checked before they are converted: nlohmann converts a float to an
    // integer field by truncation, and one outside the field's range is undefined behaviour.
    using Setter = std::function<void(const nlohmann::json&)>;
    auto str = [](std::string& f) -> Setter { return [&f](const nlohmann::json& v) { f = v.get<std::string>(); }; };
    auto i64 = [](int64_t& f) -> Setter {
        return [&f](const nlohmann::json& v) { f = integer_in(v, INT64_MIN, INT64_MAX); };
    };
    auto i32 = [](int& f) -> Setter { return [&f](const nlohmann::json& v) { f = (int)integer_in(v, INT_MIN, INT_MAX); }; };
    auto dbl = [](double& f) -> Setter {
        return [&f](const nlohmann::json& v) {
            if (!v.is_number()) throw BadValue("has the wrong type (" + std::string(v.type_name()) + "): must be a number");
            f = v.get<double>();
            if (!std::isfinite(f)) throw BadValue("must be a finite number");
        };
    };
    auto bln = [](bool& f) -> Setter { return [&f](const nlohmann::json& v) { f = v.get<bool>(); }; };
    const std::map<std::string, Setter> fields = {
        {"model_path", str(c.model_path)}, {"backend", str(c.backend)}, {"n_threads", i32(c.n_threads)},
        {"n_ctx", i64(c.n_ctx)}, {"memory_db", str(c.memory_db)}, {"cloud_url", str(c.cloud_url)},
        {"cloud_chat_url", str(c.cloud_chat_url)}, {"cloud_token", str(c.cloud_token)},
        {"cloud_model", str(c.cloud_model)}, {"verify_tls", bln(c.verify_tls)}, {"router_path", str(c.router_path)},
        {"router_threshold", dbl(c.router_threshold)}, {"privacy_mode", bln(c.privacy_mode)},
        {"cloud_calls_per_hour", i64(c.cloud_calls_per_hour)}, {"cloud_tokens_per_day", i64(c.cloud_tokens_per_day)},
        {"suggestion_tokens", i32(c.suggestion_tokens)}, {"suggestion_end", str(c.suggestion_end)},
        {"suggestion_complete_words", bln(c.suggestion_complete_words)},
        {"suggestion_no_repeat_ngram", i32(c.suggestion_no_repeat_ngram)},
        {"suggestion_temperature", dbl(c.suggestion_temperature)}, {"suggestion_top_k", i32(c.suggestion_top_k)},
        {"suggestion_top_p", dbl(c.suggestion_top_p)},
        {"suggestion_seed",
         [&c](const nlohmann::json& v) {
             if (!v.is_number()) throw BadValue("has the wrong type (" + std::string(v.type_name()) + "): must be an integer");
             if (!v.is_number_integer() || (!v.is_number_unsigned() && v.get<int64_t>() < 0))
                 throw BadValue("must be an integer from 0 to 18446744073709551615");
             c.suggestion_seed = v.get<uint64_t>();
         }},
        {"suggestion_stop", [&c](const nlohmann::json& v) { c.suggestion_stop = v.get<std::vector<std::string>>(); }},
        {"memory_budget_tokens", i32(c.memory_budget_tokens)},
        {"memory_max_items", i32(c.memory_max_items)}, {"memory_edit_threshold", i32(c.memory_edit_threshold)},
        {"memory_window_words", i32(c.memory_window_words)}, {"background_reeval", bln(c.background_reeval)},
        {"background_idle_ms", i32(c.background_idle_ms)},
    };
    for (const auto& [key, value] : j.items()) {
        auto it = fields.find(key);
        if (it == fields.end()) throw std::runtime_error(path + ": unknown field '" + key + "'");
        try {
            it->second(value);
        } catch (const nlohmann::json::exception&) {
            throw std::runtime_error(path + ": field '" + key + "' has the wrong type (" + value.type_name() + ")");
        } catch (const BadValue& e) {
            throw std::runtime_error(path + ": field '" + key + "' " + e.what() + " (got " + value.dump() + ")");
        }
    }
    if (c.model_path.empty()) throw std::runtime_error(path + ": field 'model_path' is required");
    return c;
}

std::string UsageTotals::to_json() const {
    return nlohmann::json{{"suggestions", suggestions},
                          {"local_asks", local_asks},
                          {"cloud_asks", cloud_asks},
                          {"prompt_tokens", prompt_tokens},
                          {"completion_tokens", completion_tokens},
                          {"cloud_prompt_tokens", cloud_prompt_tokens},
                          {"cloud_completion_tokens", cloud_completion_tokens},
                          {"last_ttft_ms", last_ttft_ms},
                          {"last_tokens_per_s", last_tokens_per_s},
                          {"memory_notes", memory_notes},
                          {"online", online},
                          {"backend", backend},
                          {"model", model},
                          {"model_is_chat", model_is_chat},
                          {"background_starts", background_starts},
                          {"background_runs", background_runs},
                          {"background_cancels", background_cancels},
                          {"background_tokens", background_tokens},
                          {"last_background_ms", last_background_ms}}
        .dump();
}

}  // namespace tandem
