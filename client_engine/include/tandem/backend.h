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
ContextFactory make_backend_factory(const std::string& backend, std::function<void(const std::string&)> gpu_not_used);

// Whether this build has the CUDA engine.
bool cuda_engine_built();

}  // namespace tandem
