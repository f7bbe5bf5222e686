// Backend choice for the engine (see backend.h). TANDEM_HAVE_CUDA_ENGINE comes with
// tandem_engine_cuda when the build has CUDA.
#include "tandem/backend.h"

#include <cmath>
#include <stdexcept>

#include "tandem/turbo_heads.h"

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

// cp with the model's heads file applied (when turbo KV is on and one exists), noted.
static ContextParams with_heads(const Model& m, const ContextParams& cp, const std::function<void(const std::string&)>& note) {
    ContextParams p = cp;
    const std::string used = apply_turbo_heads_file(m, p);
    if (!used.empty() && note)
        note("turbo KV: head bits from " + used + " (" + std::to_string((int)std::lround(p.turbo.frac_2bit * 100)) +
             "% of heads at 2 bits)");
    return p;
}

ContextFactory make_backend_factory(const std::string& backend, std::function<void(const std::string&)> gpu_not_used,
                                    std::function<void(const std::string&)> note) {
    if (backend != "cpu" && backend != "cuda" && backend != "auto")
        throw std::invalid_argument("backend must be cpu, cuda or auto, not '" + backend + "'");
    auto cpu = [note](std::shared_ptr<const Model> m, const ContextParams& cp) -> std::unique_ptr<ComputeContext> {
        const ContextParams p = with_heads(*m, cp, note);
        return std::make_unique<InferenceContext>(std::move(m), p);
    };
    if (backend == "cpu") return cpu;
#ifdef TANDEM_HAVE_CUDA_ENGINE
    return [backend, gpu_not_used, note](std::shared_ptr<const Model> m, const ContextParams& cp0) -> std::unique_ptr<ComputeContext> {
        const ContextParams cp = with_heads(*m, cp0, note);
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
    return cpu;
#endif
}

}  // namespace tandem
