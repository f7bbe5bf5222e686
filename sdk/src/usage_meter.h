// Usage accounting for the Assistant: what suggest(), ask() and the background re-evaluation
// spent, as UsageTotals (tandem/assistant.h). Internal to the SDK.
//
// Thread safety: every method may be called from any thread (one mutex).
#pragma once
#include <cstdint>
#include <mutex>

#include "tandem/assistant.h"
#include "tandem/engine.h"

namespace tandem {

// The Assistant's stats of one local generation.
GenerationStats stats_of(const Usage& u);

class UsageMeter {
public:
    // Local generations count only the prompt tokens they evaluated (not the reused prefix).
    void add_suggestion(const Usage& u);
    void add_local_ask(const Usage& u);
    // A cloud answer; the server does not report usage, so the tokens are estimates.
    void add_cloud_ask(int64_t prompt_tokens, int64_t completion_tokens);
    // A background evaluation started evaluating chunks.
    void add_background_start();
    // A completed background evaluation of `tokens` tokens in `eval_ms` (its chunks only).
    void add_background_run(int64_t tokens, double eval_ms);
    // A background evaluation stopped by a keystroke or an ask (resumed later).
    void add_background_cancel();

    // Every counter above; the caller fills online, backend and memory_notes.
    UsageTotals totals() const;

private:
    mutable std::mutex mu_;
    UsageTotals t_;
};

}  // namespace tandem
