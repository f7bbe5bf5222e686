// Internal to attention_causal_cpu.cpp: the prefill attention kernel (attend_causal in
// tandem/cpu_attention.h), written once over a vector type W of kLanes floats. The including file
// defines TGT (its target attribute) and W first, and includes this inside its own namespace,
// once per vector width.
//
// Key blocks of kBlock keys (W::kKeyVecs vectors of kLanes) are converted from the cache to f32
// once for all the rows of the call (n_q tokens x group heads), the keys channel-major; the rows
// that see a block then take it 4 at a time (causal_rows) in three vector steps: kBlock scores a
// row (FMAs over the channels, a key per lane), the online-softmax update (W::exp_neg on the
// scores less the running max), and the outputs' update with the block's values, each value
// vector loaded once for the 4 rows. A row's running output lives in scratch (L1: rows x
// head_dim floats).

constexpr int kLanes = W::kLanes;
constexpr int kKeyVecs = W::kKeyVecs;
constexpr int kBlock = kKeyVecs * kLanes;
using F = W::F;

// One row's running state: o (head_dim floats) and the denominator's kLanes partial sums l (a
// lane per key position in a block; summed once at the end), both in scratch; the max m.
struct RowState {
    float *o, *l;
    float m;
};

// Keys [kb, kb + kBlock) for R query rows q[r], each seeing the block's first n[r] keys (>= 1):
// kt holds the keys channel-major (kt[i * kBlock + j]: channel i of key j), so a row's kBlock
// scores are FMAs over the channels, a chain per vector of keys, each broadcast query channel
// serving all of them; vbuf the values, f32 rows of hd. The R rows' chains are independent, and
// each value vector loaded serves all of them.
template <int R>
TGT static void causal_rows(const float* const* q, const int* n, RowState* const* st, const float* kt,
                            const float* vbuf, int hd, float scale) {
    F s[R][kKeyVecs];
    for (int r = 0; r < R; r++)
        for (int h = 0; h < kKeyVecs; h++) s[r][h] = W::zero();
    for (int i = 0; i < hd; i++) {
        F k[kKeyVecs];
        for (int h = 0; h < kKeyVecs; h++) k[h] = W::load(kt + i * kBlock + h * kLanes);
        for (int r = 0; r < R; r++) {
            const F qi = W::set1(q[r][i]);
            for (int h = 0; h < kKeyVecs; h++) s[r][h] = W::fmadd(qi, k[h], s[r][h]);
        }
    }
    // The rows' softmax steps in phases, each over all R rows (unrolled, so the rows' scores stay
    // in registers and their exponentials run side by side): scores, the rare new maximum, the
    // probabilities. Each row's arithmetic is the same as one row at a time.
    alignas(64) float pj[R][kBlock];
    int n_max = 0;
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        for (int h = 0; h < kKeyVecs; h++)
            s[r][h] = W::first_or(n[r] - h * kLanes, W::mul(s[r][h], W::set1(scale)), -INFINITY);
        n_max = std::max(n_max, n[r]);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        RowState& S = *st[r];
        F smax = s[r][0];
        for (int h = 1; h < kKeyVecs; h++) smax = W::max(smax, s[r][h]);
        if (W::any_gt(smax, S.m)) {  // a new maximum: the running sums shrink (most blocks after the first few keep it)
            const float m_new = W::hmax(smax);
            const F cv = W::set1(S.m == -INFINITY ? 0.0f : std::exp(S.m - m_new));
            W::store(S.l, W::mul(W::load(S.l), cv));
            for (int i = 0; i < hd; i += kLanes) W::store(S.o + i, W::mul(W::load(S.o + i), cv));
            S.m = m_new;
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        RowState& S = *st[r];
        F l = W::load(S.l);
        for (int h = 0; h < kKeyVecs; h++) {
            const F p = W::first_or(n[r] - h * kLanes, W::exp_neg(W::sub(s[r][h], W::set1(S.m))), 0.0f);
            W::store(pj[r] + h * kLanes, p);
            l = W::add(l, p);
        }
        W::store(S.l, l);
    }
    // o_r += sum_j p_rj v_j, 4 vectors of channels at a time (p_rj = 0 past row r's keys)
    int i = 0;
    for (; i + 4 * kLanes <= hd; i += 4 * kLanes) {
        F o[R][4];
        for (int r = 0; r < R; r++)
            for (int c = 0; c < 4; c++) o[r][c] = W::load(st[r]->o + i + c * kLanes);
        for (int j = 0; j < n_max; j++) {
            const float* v = vbuf + j * hd + i;
            const F v0 = W::load(v), v1 = W::load(v + kLanes), v2 = W::load(v + 2 * kLanes), v3 = W::load(v + 3 * kLanes);
            for (int r = 0; r < R; r++) {
                const F pv = W::set1(pj[r][j]);
                o[r][0] = W::fmadd(pv, v0, o[r][0]);
                o[r][1] = W::fmadd(pv, v1, o[r][1]);
                o[r][2] = W::fmadd(pv, v2, o[r][2]);
                o[r][3] = W::fmadd(pv, v3, o[r][3]);
            }
        }
        for (int r = 0; r < R; r++)
            for (int c = 0; c < 4; c++) W::store(st[r]->o + i + c * kLanes, o[r][c]);
    }
    for (; i < hd; i += kLanes)
        for (int r = 0; r < R; r++) {
            F o = W::load(st[r]->o + i);
            for (int j = 0; j < n_max; j++) o = W::fmadd(W::set1(pj[r][j]), W::load(vbuf + j * hd + i), o);
            W::store(st[r]->o + i, o);
        }
}

// attend_causal for head_dim % kLanes == 0, head_dim <= 256, n_q * group <= kMaxRows.
constexpr int kMaxRows = 512;
TGT static void attend_causal_w(const float* Q, int64_t q_stride, int n_q, int group, int64_t pos0, const void* K,
                                const void* V, int64_t kv_stride, int hd, float scale, GgmlType t, float* out,
                                int64_t out_stride) {
    const int rows = n_q * group, row_floats = hd + kLanes;
    thread_local std::vector<float> scratch;
    if (scratch.size() < (size_t)(rows * row_floats)) scratch.resize((size_t)(rows * row_floats));
    std::fill(scratch.begin(), scratch.begin() + rows * row_floats, 0.0f);
    RowState st[kMaxRows];
    for (int r = 0; r < rows; r++) {
        float* row = scratch.data() + (size_t)r * row_floats;
        st[r] = RowState{row, row + hd, -INFINITY};
    }
    // The block's keys and values as f32 (kBlock x head_dim each, up to 128 KB on zmm): on the
    // heap, once per thread, 64-byte aligned; a caller's thread may have a small stack.
    thread_local std::vector<float> kv_block;
    if (kv_block.empty()) kv_block.resize(2 * kBlock * 256 + 16);
    float* const kt = (float*)(((uintptr_t)kv_block.data() + 63) & ~(uintptr_t)63);
    float* const vbuf = kt + kBlock * 256;
    const int64_t n_keys = pos0 + n_q;
    constexpr int kR = 4;  // rows a causal_rows call takes
    const int elt = t == GgmlType::F32 ? 4 : 2;
    // Few rows (decode: one token's group of heads) do little work per block, so the block's
    // loads stall: the cache comes from L3 or DRAM at long contexts. They prefetch the next
    // block's keys and values (decode over 1,728 tokens, one Zen 5 core: demo cloud +12-15%,
    // demo client -5% to +9%, bench/results/engine-cpu.md).
    const bool prefetch = rows <= 16;
    for (int64_t kb = 0; kb < n_keys; kb += kBlock) {
        for (int64_t j = kb + kBlock; prefetch && j < std::min(n_keys, kb + 2 * kBlock); j++)
            for (int off = 0; off < hd * elt; off += 64) {
                _mm_prefetch((const char*)K + (j * kv_stride) * elt + off, _MM_HINT_T0);
                _mm_prefetch((const char*)V + (j * kv_stride) * elt + off, _MM_HINT_T0);
            }
        for (int h = 0; h < kKeyVecs; h++)
            for (int i = 0; i < hd; i += kLanes) {
                F k[kLanes];  // keys kb + h kLanes.. as rows of kLanes channels, then (W::transpose) channels as rows of keys
                for (int j0 = 0; j0 < kLanes; j0++) {
                    const int j = h * kLanes + j0;
                    const bool in = kb + j < n_keys;
                    k[j0] = in ? W::load_kv(K, (kb + j) * kv_stride + i, t) : W::zero();
                    W::store(vbuf + j * hd + i, in ? W::load_kv(V, (kb + j) * kv_stride + i, t) : W::zero());
                }
                W::transpose(k);
                for (int c = 0; c < kLanes; c++) W::store(kt + (i + c) * kBlock + h * kLanes, k[c]);
            }
        // the rows that see the block: those of tokens tq >= kb - pos0, in groups of kR
        const int r0 = (int)std::max<int64_t>(0, kb - pos0) * group;
        for (int r = r0; r < rows; r += kR) {
            const int nr = std::min(kR, rows - r);
            const float* q[kR];
            int n[kR];
            RowState* sp[kR];
            for (int k = 0; k < nr; k++) {
                const int tq = (r + k) / group, g = (r + k) % group;
                q[k] = Q + tq * q_stride + g * hd;
                n[k] = (int)std::min<int64_t>(kBlock, pos0 + tq + 1 - kb);
                sp[k] = &st[r + k];
            }
            switch (nr) {
                case 4: causal_rows<4>(q, n, sp, kt, vbuf, hd, scale); break;
                case 3: causal_rows<3>(q, n, sp, kt, vbuf, hd, scale); break;
                case 2: causal_rows<2>(q, n, sp, kt, vbuf, hd, scale); break;
                default: causal_rows<1>(q, n, sp, kt, vbuf, hd, scale); break;
            }
        }
    }
    for (int tq = 0; tq < n_q; tq++)
        for (int g = 0; g < group; g++) {
            const RowState& s = st[tq * group + g];
            const F inv = W::set1(1.0f / W::reduce_add(W::load(s.l)));
            for (int i = 0; i < hd; i += kLanes) W::store(out + tq * out_stride + g * hd + i, W::mul(W::load(s.o + i), inv));
        }
}
