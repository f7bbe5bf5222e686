// Backend choice for the engine (see backend.h). TANDEM_HAVE_CUDA_ENGINE comes with
// tandem_engine_cuda when the build has CUDA.
#include "tandem/backend.h"

#include <stdexcept>

#ifdef TANDEM_HAVE_CUDA_ENGINE
#include "tandem/gpu_context.h"
#endif

namespace tandem {

bool cuda_engine_built() {
#ifdef TANDEM_HAVE_CUDA_ENGINE
    return true;
#else
    return false;
#endif
}

ContextFactory make_backend_factory(const std::string& backend, std::function<void(const std::string&)> gpu_not_used) {
    if (backend != "cpu" && backend != "cuda" && backend != "auto")
        throw std::invalid_argument("backend must be cpu, cuda or auto, not '" + backend + "'");
    if (backend == "cpu") return {};
#ifdef TANDEM_HAVE_CUDA_ENGINE
    return [backend, gpu_not_used](std::shared_ptr<const Model> m, const ContextParams& cp) -> std::unique_ptr<ComputeContext> {
        if (backend == "cuda") return std::make_unique<GpuContext>(std::move(m), cp);
        const GpuDeviceInfo info = gpu_device_info();
        std::string why;
        if (!info.present) {
            why = info.reason;
        } else {
            const uint64_t need = gpu_context_bytes_needed(*m, cp);
            if (need > info.free_bytes)
                why = "the model needs " + std::to_string(need >> 20) + " MiB, " + std::to_string(info.free_bytes >> 20) +
                      " MiB free on " + info.name;
        }
        if (why.empty()) return std::make_unique<GpuContext>(std::move(m), cp);
        if (gpu_not_used) gpu_not_used("GPU not used: " + why + "; running on the CPU");
        return std::make_unique<InferenceContext>(std::move(m), cp);
    };
#else
    if (backend == "cuda") throw std::runtime_error("backend cuda: this build has no CUDA engine (configure with -DTANDEM_CUDA=ON)");
    if (gpu_not_used) gpu_not_used("GPU not used: this build has no CUDA engine; running on the CPU");
    return {};
#endif
}

}  // namespace tandem
