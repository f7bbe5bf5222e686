// Model::cpu_weights: packing a model's matrices for the CPU kernels once, then letting the
// file mapping's pages of them go (tandem/model.h).
#include "tandem/cpu_weights.h"

namespace tandem {

static cpu::PackedWeights pack(const GgufFile& f, const WeightView& w, ThreadPool* pool, size_t* bytes) {
    cpu::PackedWeights p = cpu::pack_weights(w.type, w.data, w.rows, w.cols, pool);
    f.release_pages(w.data, row_size(w.type, w.cols) * (size_t)w.rows);
    *bytes += p.bytes();
    return p;
}

const CpuWeights& Model::cpu_weights(ThreadPool* pool) const {
    std::call_once(cpu_once_, [&] {
        auto cw = std::make_shared<CpuWeights>();
        for (const LayerWeights& L : layers) {
            CpuLayerWeights c;
            c.wq = pack(file_, L.wq, pool, &cw->bytes);
            c.wk = pack(file_, L.wk, pool, &cw->bytes);
            c.wv = pack(file_, L.wv, pool, &cw->bytes);
            c.wo = pack(file_, L.wo, pool, &cw->bytes);
            c.w_gate = pack(file_, L.w_gate, pool, &cw->bytes);
            c.w_up = pack(file_, L.w_up, pool, &cw->bytes);
            c.w_down = pack(file_, L.w_down, pool, &cw->bytes);
            cw->layers.push_back(std::move(c));
        }
        cw->output = pack(file_, output, pool, &cw->bytes);
        cpu_ = std::move(cw);
    });
    return *cpu_;
}

}  // namespace tandem
