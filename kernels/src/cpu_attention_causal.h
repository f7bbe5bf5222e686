// Internal to attention_causal_cpu.cpp: the prefill attention kernel (attend_causal in
// tandem/cpu_attention.h), written once over a vector type W of kLanes floats. The including file
// defines TGT (its target attribute) and W first, and includes this inside its own namespace,
// once per vector width.
//
// Key blocks of kLanes keys are converted from the cache to f32 once for all the rows of the
// call (n_q tokens x group heads); each row then takes the block in three vector steps:
// kLanes scores (one dot per key, summed across lanes by W::hsum), the online-softmax update
// (W::exp_neg on the scores less the running max), and the output's update with the block's
// values. A row's running output lives in scratch (L1: rows x head_dim floats).

constexpr int kLanes = W::kLanes;
using F = W::F;

// One row's running state: o (head_dim floats, in scratch), max m, denominator l.
struct RowState {
    float* o;
    float m, l;
};

// Keys [kb, kb + kLanes) (kbuf, vbuf: f32 rows of hd, zero past the cache) for one query row q
// that sees keys < n_vis.
TGT static void causal_block(const float* q, const float* kbuf, const float* vbuf, int64_t kb, int64_t n_vis, int hd,
                             float scale, RowState& st) {
    F acc[kLanes];
    for (int j = 0; j < kLanes; j++) acc[j] = W::zero();
    for (int i = 0; i < hd; i += kLanes) {
        const F qv = W::load(q + i);
        for (int j = 0; j < kLanes; j++) acc[j] = W::fmadd(qv, W::load(kbuf + j * hd + i), acc[j]);
    }
    const int n = (int)std::min<int64_t>(kLanes, n_vis - kb);  // visible keys of the block, >= 1
    const F s = W::first_or(n, W::mul(W::hsum(acc), W::set1(scale)), -INFINITY);
    const float m_new = std::max(st.m, W::hmax(s));
    const F p = W::first_or(n, W::exp_neg(W::sub(s, W::set1(m_new))), 0.0f);
    alignas(64) float pj[kLanes];
    W::store(pj, p);
    if (m_new != st.m) {  // a new maximum: the running sums shrink (most blocks after the first few keep it)
        const float c = st.m == -INFINITY ? 0.0f : std::exp(st.m - m_new);
        st.l *= c;
        const F cv = W::set1(c);
        for (int i = 0; i < hd; i += kLanes) W::store(st.o + i, W::mul(W::load(st.o + i), cv));
        st.m = m_new;
    }
    st.l += W::reduce_add(p);
    // o += sum_j p_j v_j, 4 vectors of channels at a time: 4 independent FMA chains (one chain
    // of n FMAs per vector waits on the FMA latency)
    int i = 0;
    for (; i + 4 * kLanes <= hd; i += 4 * kLanes) {
        F o0 = W::load(st.o + i), o1 = W::load(st.o + i + kLanes);
        F o2 = W::load(st.o + i + 2 * kLanes), o3 = W::load(st.o + i + 3 * kLanes);
        for (int j = 0; j < n; j++) {
            const F pv = W::set1(pj[j]);
            const float* v = vbuf + j * hd + i;
            o0 = W::fmadd(pv, W::load(v), o0);
            o1 = W::fmadd(pv, W::load(v + kLanes), o1);
            o2 = W::fmadd(pv, W::load(v + 2 * kLanes), o2);
            o3 = W::fmadd(pv, W::load(v + 3 * kLanes), o3);
        }
        W::store(st.o + i, o0);
        W::store(st.o + i + kLanes, o1);
        W::store(st.o + i + 2 * kLanes, o2);
        W::store(st.o + i + 3 * kLanes, o3);
    }
    for (; i < hd; i += kLanes) {
        F o = W::load(st.o + i);
        for (int j = 0; j < n; j++) o = W::fmadd(W::set1(pj[j]), W::load(vbuf + j * hd + i), o);
        W::store(st.o + i, o);
    }
}

// attend_causal for head_dim % kLanes == 0, head_dim <= 256, n_q * group <= kMaxRows.
constexpr int kMaxRows = 512;
TGT static void attend_causal_w(const float* Q, int64_t q_stride, int n_q, int group, int64_t pos0, const void* K,
                                const void* V, int64_t kv_stride, int hd, float scale, GgmlType t, float* out,
                                int64_t out_stride) {
    const int rows = n_q * group;
    thread_local std::vector<float> scratch;
    if (scratch.size() < (size_t)(rows * hd)) scratch.resize((size_t)(rows * hd));
    std::fill(scratch.begin(), scratch.begin() + rows * hd, 0.0f);
    RowState st[kMaxRows];
    for (int r = 0; r < rows; r++) st[r] = RowState{scratch.data() + (size_t)r * hd, -INFINITY, 0.0f};
    alignas(64) float kbuf[kLanes * 256], vbuf[kLanes * 256];
    const int64_t n_keys = pos0 + n_q;
    for (int64_t kb = 0; kb < n_keys; kb += kLanes) {
        for (int j = 0; j < kLanes; j++)
            for (int i = 0; i < hd; i += kLanes) {
                const bool in = kb + j < n_keys;
                W::store(kbuf + j * hd + i, in ? W::load_kv(K, (kb + j) * kv_stride + i, t) : W::zero());
                W::store(vbuf + j * hd + i, in ? W::load_kv(V, (kb + j) * kv_stride + i, t) : W::zero());
            }
        for (int tq = 0; tq < n_q; tq++) {
            const int64_t n_vis = pos0 + tq + 1;
            if (kb >= n_vis) continue;
            for (int g = 0; g < group; g++)
                causal_block(Q + tq * q_stride + g * hd, kbuf, vbuf, kb, n_vis, hd, scale, st[tq * group + g]);
        }
    }
    for (int tq = 0; tq < n_q; tq++)
        for (int g = 0; g < group; g++) {
            const RowState& s = st[tq * group + g];
            const F inv = W::set1(1.0f / s.l);
            for (int i = 0; i < hd; i += kLanes) W::store(out + tq * out_stride + g * hd + i, W::mul(W::load(s.o + i), inv));
        }
}
