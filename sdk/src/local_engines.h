// The local model's inference contexts, for the Assistant. Internal to the SDK.
//
//   active   serves suggest(); its KV cache holds the last suggestion's prompt, which the next
//            keystroke reuses. Used only under the Assistant's foreground lock.
//   spare    a second context on the same backend (same weights: mapped once on the CPU, a
//            second copy on the GPU; its own KV cache), when AssistantConfig::background_reeval
//            and it fits. The background re-evaluation fills it with the prompt that new
//            memory notes make, and ask() runs on it, so neither disturbs the active
//            context's cached prefix. Used only under spare_mutex().
//
// swap() makes the spare the active context (the caller holds the foreground lock and
// spare_mutex()). Each Engine says what its KV cache holds (Engine::cached_prefix); nothing
// here mirrors it.
#pragma once
#include <memory>
#include <mutex>
#include <string>

#include "events.h"
#include "tandem/assistant.h"
#include "tandem/chat_template.h"
#include "tandem/engine.h"

namespace tandem {

class LocalEngines {
public:
    // Loads the active context on cfg.backend and emits ModelLoaded (and GpuNotUsed with the
    // reason when "auto" chose the CPU). Throws like Engine::load, std::invalid_argument for a
    // bad backend name.
    LocalEngines(const AssistantConfig& cfg, const Emit& emit);

    // Loads the spare on the active context's backend (a swap must never move suggestions to
    // another device). When it does not fit there, an Error event says so and there is no
    // spare: the background re-evaluation is off and ask() runs on the active context.
    void add_spare(const AssistantConfig& cfg, const Emit& emit);

    Engine& active() { return *engines_[active_]; }
    Engine* spare() { return engines_[1 - active_].get(); }
    std::mutex& spare_mutex() { return spare_mu_; }
    void swap() { active_ = 1 - active_; }
    // Stops the generation or prefill running on either context within one token or chunk.
    void cancel();

    const std::string& backend() const { return backend_; }  // "cpu" or "cuda"
    ChatFormat chat_format() const { return format_; }
    const std::string& model_name() const { return model_name_; }  // GGUF general.name, else the file name

private:
    EngineParams params_;
    std::unique_ptr<Engine> engines_[2];
    int active_ = 0;  // changes only in swap()
    std::mutex spare_mu_;
    std::string backend_;
    ChatFormat format_ = ChatFormat::Raw;
    std::string model_name_;
};

}  // namespace tandem
