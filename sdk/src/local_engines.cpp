// The active and spare inference contexts (see local_engines.h).
#include "local_engines.h"

#include <stdexcept>

#include "tandem/backend.h"
#include "tandem/cpu_matmul.h"

namespace tandem {

LocalEngines::LocalEngines(const AssistantConfig& cfg, const Emit& emit) {
    if (cfg.model_path.empty()) throw std::invalid_argument("AssistantConfig.model_path is required");
    if (cfg.backend != "auto" && cfg.backend != "cpu" && cfg.backend != "cuda")
        throw std::invalid_argument("AssistantConfig.backend must be auto, cpu or cuda, not '" + cfg.backend + "'");
    params_.context.n_ctx = cfg.n_ctx;
    params_.context.n_threads = cfg.n_threads;
    std::string gpu_not_used;
    params_.make_context = make_backend_factory(cfg.backend, [&](const std::string& why) { gpu_not_used = why; });
    engines_[0] = Engine::load(cfg.model_path, params_);
    backend_ = engines_[0]->context().backend_name();
    format_ = detect_chat_format(engines_[0]->model().file());
    model_name_ = engines_[0]->model().config().name;
    if (model_name_.empty()) model_name_ = cfg.model_path.substr(cfg.model_path.find_last_of('/') + 1);
    std::string where = backend_;
    if (backend_ == "cpu") {
        where += std::string(" (kernels ") + cpu::kernel_path_name();
        if (cpu::cpu_features().amx_refused) where += "; the CPU has AMX, but the OS did not grant its tile state";
        where += ")";
    }
    emit(EventKind::ModelLoaded, engines_[0]->model().config().architecture + " model " + cfg.model_path + " on the " + where);
    if (!gpu_not_used.empty()) emit(EventKind::GpuNotUsed, gpu_not_used);
}

void LocalEngines::add_spare(const AssistantConfig& cfg, const Emit& emit) {
    EngineParams p = params_;
    p.make_context = make_backend_factory(backend_, [](const std::string&) {});
    try {
        engines_[1 - active_] = Engine::load(cfg.model_path, p);
    } catch (const std::exception& e) {
        emit(EventKind::Error, "no second " + backend_ + " context (" + e.what() +
                                   "): background re-evaluation is off and ask() shares the suggestions' context");
    }
}

void LocalEngines::cancel() {
    for (auto& e : engines_)
        if (e) e->cancel();
}

}  // namespace tandem
