// A model's matrices packed for the CPU kernels (tandem/cpu_matmul.h): what the CPU forward
// pass reads instead of the GGUF mapping. Made once per Model by Model::cpu_weights().
#pragma once
#include <vector>

#include "tandem/cpu_matmul.h"
#include "tandem/model.h"

namespace tandem {

struct CpuLayerWeights {
    cpu::PackedWeights wq, wk, wv, wo, w_gate, w_up, w_down;
};

struct CpuWeights {
    std::vector<CpuLayerWeights> layers;
    cpu::PackedWeights output;
    size_t bytes = 0;  // packed bytes held
};

}  // namespace tandem
