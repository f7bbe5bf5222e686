// Choosing where the model runs: "cpu", "cuda" or "auto".
//
//   cpu   the CPU engine (InferenceContext)
//   cuda  the GPU engine (GpuContext), or an error saying why not (no device, too little free
//         memory, built without CUDA)
//   auto  the GPU when there is a device and the model fits in its free memory, else the CPU,
//         and `gpu_not_used(reason)` is told why: never a silent fallback
//
// Linked as tandem_backend, which carries the CUDA engine when the build has one.
#pragma once
#include <functional>
#include <string>

#include "tandem/engine.h"

namespace tandem {

// Throws std::invalid_argument for an unknown name, std::runtime_error for "cuda" in a build
// without CUDA. The factory itself throws when "cuda" cannot run (no device, no memory).
// With ContextParams.turbo_kv and no turbo_head_bits, the factory loads MODEL.heads.json when
// it exists (tandem/turbo_heads.h; TurboHeadsError when malformed or for another model) and
// tells `note` ("turbo KV: head bits from PATH (25% of heads at 2 bits)").
ContextFactory make_backend_factory(const std::string& backend, std::function<void(const std::string&)> gpu_not_used,
                                    std::function<void(const std::string&)> note = {});

// Whether this build has the CUDA engine.
bool cuda_engine_built();

}  // namespace tandem
