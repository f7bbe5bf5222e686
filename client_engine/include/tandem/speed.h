// Measuring the engine's speed the same way everywhere (`tandem bench`, bench/): prompt
// tokens/s for one batch of n_prompt tokens and decode tokens/s over n_decode single-token
// steps, the median of `runs`, with the weight bytes a decoded token reads.
#pragma once
#include <cstdint>

#include "tandem/context.h"

namespace tandem {

struct SpeedResult {
    double prompt_tokens_per_s = 0;  // median
    double decode_tokens_per_s = 0;  // median
    uint64_t weight_bytes_per_token = 0;  // every matrix once, one row of the embedding table
    double decode_weight_gbs() const { return decode_tokens_per_s * (double)weight_bytes_per_token / 1e9; }
};

// Bytes of weights one decoded token reads (the embedding table contributes one row unless it
// is also the output matrix).
uint64_t decode_weight_bytes(const Model& m);

// The weight-matmul operations (2 per multiply-add) of a prompt of n_prompt tokens in one
// batch: every layer matrix for each token, the output matrix for the last token only.
double prompt_matmul_ops(const Model& m, int n_prompt);

// ctx.n_ctx() must hold n_prompt + n_decode tokens. Token ids are fixed pseudo-random values
// (speed does not depend on them). The cache is cleared before and after. cpu_time: time with
// the calling thread's CPU time instead of the wall clock, which measures all the work only
// when it all runs on that thread (a CPU context with one thread), and then holds while other
// processes share the machine.
SpeedResult measure_speed(ComputeContext& ctx, int n_prompt, int n_decode, int runs, bool cpu_time = false);

}  // namespace tandem
