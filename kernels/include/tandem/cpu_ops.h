// Element-wise ops of the engine's CPU forward pass.
#pragma once
#include <cstdint>

namespace tandem::cpu_ops {

// g[i] = silu(g[i]) * u[i] for i in [0, n), silu(x) = x / (1 + exp(-x)): the SwiGLU gate.
// AVX-512 or AVX2 when the CPU has it (exp of vec_exp.h, relative error < 3e-7), else std::exp.
void silu_mul(float* g, const float* u, int64_t n);

}  // namespace tandem::cpu_ops
