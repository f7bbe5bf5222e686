// The chunk sizes of a background re-evaluation (background_reeval.cpp). Internal to the SDK.
//
// 8 tokens first; after each chunk, as many tokens as the time budget holds at that chunk's
// cost per token. The budget starts at 15 ms, so that a keystroke arriving then shares the cores
// with at most that much work, and doubles chunk by chunk while the writer stays idle, up to
// 120 ms or 4 times the first chunk's time, whichever is more (on a slow machine the first
// 8 tokens alone may take 50 ms: about what a keystroke's own evaluation costs there). A chunk
// reads every weight however few tokens it holds (on a CPU a 4-token chunk of a 1B model costs
// about a decode step), so chunks of 15 ms alone made a pause's re-evaluation several times
// slower than one prefill of the window. The last chunk's cost per token overstates a larger
// chunk's (its weight reads are shared by more tokens), so chunks grow towards the budget over a
// few steps and do not pass it.
#pragma once
#include <algorithm>
#include <cstdint>

namespace tandem {

class ChunkSchedule {
public:
    static constexpr int64_t kFirstTokens = 8, kMinTokens = 4, kMaxTokens = 256;
    static constexpr double kFirstMs = 15, kMaxMs = 120, kMaxFirstChunks = 4;

    int64_t next() const { return chunk_; }
    // The chunk just evaluated held `tokens` tokens (> 0) and took `ms`.
    void done(int64_t tokens, double ms) {
        if (max_ms_ == 0) max_ms_ = std::max(kMaxMs, kMaxFirstChunks * ms);
        const double per_token = std::max(ms / (double)tokens, 1e-3);
        chunk_ = std::clamp<int64_t>((int64_t)(budget_ms_ / per_token), kMinTokens, kMaxTokens);
        budget_ms_ = std::min(2 * budget_ms_, max_ms_);
    }
    // The largest budget: 0 before the first chunk is done.
    double max_ms() const { return max_ms_; }

private:
    int64_t chunk_ = kFirstTokens;
    double budget_ms_ = kFirstMs, max_ms_ = 0;
};

}  // namespace tandem
