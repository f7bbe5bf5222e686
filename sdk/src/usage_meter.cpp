// Usage accounting (see usage_meter.h).
#include "usage_meter.h"

namespace tandem {

GenerationStats stats_of(const Usage& u) {
    GenerationStats s;
    s.prompt_tokens = u.prompt_tokens;
    s.reused_tokens = u.reused_tokens;
    s.completion_tokens = u.completion_tokens;
    s.ttft_ms = u.ttft_ms;
    s.tokens_per_s = u.decode_tokens_per_s();
    s.decode_ms = u.decode_ms;
    return s;
}

void UsageMeter::add_suggestion(const Usage& u) {
    std::lock_guard<std::mutex> lk(mu_);
    t_.suggestions++;
    t_.prompt_tokens += u.prompt_tokens - u.reused_tokens;
    t_.completion_tokens += u.completion_tokens;
    t_.last_ttft_ms = u.ttft_ms;
    t_.last_tokens_per_s = u.decode_tokens_per_s();
}

void UsageMeter::add_local_ask(const Usage& u) {
    std::lock_guard<std::mutex> lk(mu_);
    t_.local_asks++;
    t_.prompt_tokens += u.prompt_tokens - u.reused_tokens;
    t_.completion_tokens += u.completion_tokens;
}

void UsageMeter::add_cloud_ask(int64_t prompt_tokens, int64_t completion_tokens) {
    std::lock_guard<std::mutex> lk(mu_);
    t_.cloud_asks++;
    t_.cloud_prompt_tokens += prompt_tokens;
    t_.cloud_completion_tokens += completion_tokens;
}

void UsageMeter::add_background_start() {
    std::lock_guard<std::mutex> lk(mu_);
    t_.background_starts++;
}

void UsageMeter::add_background_run(int64_t tokens, double eval_ms) {
    std::lock_guard<std::mutex> lk(mu_);
    t_.background_runs++;
    t_.background_tokens += tokens;
    t_.last_background_ms = eval_ms;
}

void UsageMeter::add_background_cancel() {
    std::lock_guard<std::mutex> lk(mu_);
    t_.background_cancels++;
}

UsageTotals UsageMeter::totals() const {
    std::lock_guard<std::mutex> lk(mu_);
    return t_;
}

}  // namespace tandem
