// Numerics shared by the router kinds and their trainers: a sigmoid that does not overflow
// and the splitmix64 generator (deterministic on every platform).
#pragma once
#include <cmath>
#include <cstdint>

namespace tandem {

// 1 / (1 + e^-z), computed from e^-|z| so that it never overflows.
inline double sigmoid(double z) {
    if (z >= 0) return 1.0 / (1.0 + std::exp(-z));
    const double e = std::exp(z);
    return e / (1.0 + e);
}

constexpr uint64_t kSplitMixGamma = 0x9E3779B97F4A7C15ull;

// splitmix64 (Steele, Lea, Flood 2014): a well-mixed 64-bit value of x + kSplitMixGamma.
inline uint64_t splitmix64(uint64_t x) {
    x += kSplitMixGamma;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// A splitmix64 stream: next() returns splitmix64(state) and advances state by the gamma.
struct SplitMix64 {
    uint64_t state;
    uint64_t next() {
        const uint64_t r = splitmix64(state);
        state += kSplitMixGamma;
        return r;
    }
};

}  // namespace tandem
