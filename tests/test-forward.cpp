// The optimized CPU forward pass against the independent double-precision reference
// (tests/reference_llama.h), on real files and on synthetic models with every feature and
// weight type. Tolerance: max |logit - ref| <= kTol[type] * (max |ref| + 1). The quantized
// types carry the activation quantization error of the integer dot products (amax/254 per
// block, see cpu_matmul.h), the F16 KV cache adds ~1e-3 relative.
#include <cmath>
#include <cstring>

#include <doctest/doctest.h>

#include "reference_llama.h"
#include "tandem/context.h"
#include "tandem/engine.h"
#include "tandem/gguf.h"
#include "tandem/synthetic_model.h"
#include "test_util.h"

using namespace tandem;
using tandem_test::shared_path;

// Max |a - b| over all logits of all positions, relative to (max |ref| + 1).
// logits_out: the context's logits of every position.
static double compare(const std::string& path, const std::vector<int32_t>& toks, GgmlType kv = GgmlType::F32,
                      int64_t n_batch = 256, int n_threads = 2, std::vector<float>* logits_out = nullptr) {
    auto model = Model::load(path);
    ContextParams cp;
    cp.n_ctx = std::max<int64_t>(64, (int64_t)toks.size());
    cp.kv_type = kv;
    cp.n_batch = n_batch;
    cp.n_threads = n_threads;
    InferenceContext ctx(model, cp);
    ctx.eval(toks.data(), (int64_t)toks.size(), true);
    tandem_test::ReferenceLlama ref(path);
    const auto want = ref.forward(toks);
    const int64_t nv = model->config().n_vocab;
    double max_err = 0, max_ref = 0;
    for (size_t t = 0; t < toks.size(); t++)
        for (int64_t i = 0; i < nv; i++) {
            max_err = std::max(max_err, std::fabs(ctx.logits()[t * nv + i] - want[t][i]));
            max_ref = std::max(max_ref, std::fabs(want[t][i]));
        }
    MESSAGE(path.substr(path.find_last_of('/') + 1) << " rel err " << max_err / (max_ref + 1.0) << " max_ref " << max_ref);
    if (logits_out) logits_out->assign(ctx.logits(), ctx.logits() + toks.size() * nv);
    return max_err / (max_ref + 1.0);
}

static std::vector<int32_t> some_tokens(int n, int vocab, int seed) {
    std::vector<int32_t> t;
    for (int i = 0; i < n; i++) t.push_back((int32_t)((i * 7919 + seed * 104729) % vocab));
    return t;
}

TEST_CASE("stories260K (F32) matches the reference") {
    const auto toks = some_tokens(12, 512, 1);
    CHECK(compare(shared_path("models/stories260K.gguf"), toks) < 1e-4);
    CHECK(compare(shared_path("models/stories260K.gguf"), toks, GgmlType::F16) < 3e-3);
    // prefill split across several batches gives the same logits
    CHECK(compare(shared_path("models/stories260K.gguf"), toks, GgmlType::F32, 5) < 1e-4);
}

TEST_CASE("llama-2-tiny-random (F16 weights, 32k vocab) matches the reference") {
    CHECK(compare(shared_path("models/llama-2-tiny-random.gguf"), some_tokens(6, 32000, 2)) < 1e-3);
}

TEST_CASE("synthetic models: GQA, QKV bias + NEOX, tied embeddings, llama3 rope, every weight type") {
    tandem_test::TempDir dir;
    struct Case { const char* name; GgmlType type; double tol; };
    const Case cases[] = {{"F32", GgmlType::F32, 1e-4},   {"F16", GgmlType::F16, 1e-3},   {"BF16", GgmlType::BF16, 1e-3},
                          {"Q8_0", GgmlType::Q8_0, 2e-2}, {"Q4_0", GgmlType::Q4_0, 3e-2}, {"Q4_1", GgmlType::Q4_1, 3e-2},
                          {"Q5_0", GgmlType::Q5_0, 3e-2}, {"Q5_1", GgmlType::Q5_1, 3e-2}, {"Q4_K", GgmlType::Q4_K, 3e-2},
                          {"Q5_K", GgmlType::Q5_K, 3e-2}, {"Q6_K", GgmlType::Q6_K, 3e-2}};
    for (const char* arch : {"llama", "qwen2"}) {
        for (const Case& c : cases) {
            SyntheticModelSpec s;
            s.architecture = arch;
            s.n_embd = 256;  // K-quants need rows of 256
            s.n_head = 8;
            s.n_head_kv = 2;
            s.n_ff = 512;
            s.n_vocab = 320;
            s.weight_type = c.type;
            s.tied_embeddings = std::string(arch) == "qwen2";
            s.llama3_rope = std::string(arch) == "llama";
            s.seed = 3;
            const std::string path = dir.file(std::string(arch) + "-" + c.name + ".gguf");
            write_synthetic_model(s, path);
            INFO(arch << " " << c.name);
            CHECK(compare(path, some_tokens(7, 320, 5)) < c.tol);
        }
    }
}

// Decode (one token at a time, n_batch 1) against the reference with 8 query heads on one KV head:
// the CPU context splits the group into 2 tasks of 4 heads on its 2 threads (attend_causal per
// part); with 4 KV heads, one task per group of 2; with 8, head by head (attend).
TEST_CASE("token-by-token decode matches the reference with grouped query heads") {
    tandem_test::TempDir dir;
    for (int64_t n_head_kv : {1, 4, 8}) {
        SyntheticModelSpec s;
        s.n_embd = 256;
        s.n_head = 8;
        s.n_head_kv = n_head_kv;
        s.n_ff = 512;
        s.n_vocab = 320;
        s.seed = 5;
        const std::string path = dir.file("gqa-" + std::to_string(n_head_kv) + ".gguf");
        write_synthetic_model(s, path);
        INFO("n_head_kv " << n_head_kv);
        CHECK(compare(path, some_tokens(20, 320, 3), GgmlType::F32, 1) < 1e-4);
    }
}

// A 100-token prompt with 4 query heads a KV head: the prefill attention takes tiles of 32 tokens
// on 1 thread, 16 on 3 and 8 on 8 (a tile halves while it would give a thread fewer than 4
// tasks). Every tile size must match the reference, and give the same bits: a row's arithmetic
// does not depend on the rows it shares a tile with.
TEST_CASE("a long prompt matches the reference with prefill attention tiles of 32, 16 and 8 tokens") {
    tandem_test::TempDir dir;
    SyntheticModelSpec s;
    s.n_embd = 256;
    s.n_head = 8;
    s.n_head_kv = 2;
    s.n_ff = 512;
    s.n_vocab = 320;
    s.seed = 7;
    const std::string path = dir.file("long-prompt.gguf");
    write_synthetic_model(s, path);
    const auto toks = some_tokens(100, 320, 4);
    std::vector<float> first;
    for (int threads : {1, 3, 8}) {
        std::vector<float> logits;
        INFO("threads " << threads);
        CHECK(compare(path, toks, GgmlType::F32, 256, threads, &logits) < 1e-4);
        if (first.empty()) first = logits;
        else CHECK(std::memcmp(first.data(), logits.data(), first.size() * sizeof(float)) == 0);
    }
}

TEST_CASE("incremental decode equals one batched prefill; truncate() recomputes identically") {
    auto model = Model::load(shared_path("models/stories260K.gguf"));
    ContextParams cp;
    cp.n_ctx = 64;
    cp.n_threads = 2;
    // F32 cache: decode (attend) and prefill (attend_causal) round differently by ~1e-7, which
    // an F16 cache can turn into whole F16 steps (5e-4) of a K/V value in the next layer.
    cp.kv_type = GgmlType::F32;
    InferenceContext a(model, cp), b(model, cp);
    const auto toks = some_tokens(10, 512, 9);
    a.eval(toks.data(), 10);
    std::vector<float> batched(a.logits(), a.logits() + 512);
    for (int i = 0; i < 10; i++) b.eval(&toks[i], 1);
    for (int i = 0; i < 512; i++) REQUIRE(b.logits()[i] == doctest::Approx(batched[i]).epsilon(1e-4));
    // prefix reuse: keep 6, evaluate the last 4 again
    b.truncate(6);
    CHECK(b.n_past() == 6);
    b.eval(toks.data() + 6, 4);
    for (int i = 0; i < 512; i++) REQUIRE(b.logits()[i] == doctest::Approx(batched[i]).epsilon(1e-4));
}

TEST_CASE("errors: context full, bad token ids, unsupported architecture, missing tensor") {
    auto model = Model::load(shared_path("models/stories260K.gguf"));
    ContextParams cp;
    cp.n_ctx = 8;
    InferenceContext ctx(model, cp);
    std::vector<int32_t> nine(9, 1);
    CHECK_THROWS_AS(ctx.eval(nine.data(), 9), ContextFull);
    CHECK(ctx.n_past() == 0);
    int32_t bad = 512;
    CHECK_THROWS_WITH_AS(ctx.eval(&bad, 1), doctest::Contains("outside the vocabulary"), std::invalid_argument);

    tandem_test::TempDir dir;
    SyntheticModelSpec s;
    s.architecture = "gpt2";
    write_synthetic_model(s, dir.file("gpt2.gguf"));
    CHECK_THROWS_WITH_AS(Model::load(dir.file("gpt2.gguf")), doctest::Contains("unsupported architecture 'gpt2'"), ModelError);

    // drop a tensor: rewrite stories without blk.3.ffn_up.weight
    const GgufFile f = GgufFile::open(shared_path("models/stories260K.gguf"));
    GgufWriter w;
    for (const auto& kv : f.metadata()) w.set(kv.key, kv.value);
    for (const auto& t : f.tensors())
        if (t.name != "blk.3.ffn_up.weight") w.add_tensor(t.name, t.type, t.ne, f.tensor_data(t), t.n_bytes);
    w.write(dir.file("missing.gguf"));
    CHECK_THROWS_WITH_AS(Model::load(dir.file("missing.gguf")), doctest::Contains("missing tensor 'blk.3.ffn_up.weight'"),
                         ModelError);
}

TEST_CASE("synthetic models: tokenizer_from copies a real vocabulary (padded to n_vocab) so the Engine loads them") {
    tandem_test::TempDir dir;
    const std::string demo = shared_path("models/tandem-demo-client-q8_0.gguf");
    const auto real = Engine::load(demo);
    SyntheticModelSpec s;
    s.n_vocab = 8192;
    s.tokenizer_from = demo;
    write_synthetic_model(s, dir.file("same.gguf"));
    const auto e = Engine::load(dir.file("same.gguf"));
    const std::string text = "The General Assembly meets in New York.";
    CHECK(e->tokenizer().encode(text, true) == real->tokenizer().encode(text, true));
    CHECK(e->tokenizer().bos() == real->tokenizer().bos());
    CHECK(e->generate(text, GenerateParams{}).usage.completion_tokens > 0);

    s.n_vocab = 8192 + 40;  // padded: the extra ids decode to visible text, no text encodes to them
    write_synthetic_model(s, dir.file("padded.gguf"));
    const auto p = Engine::load(dir.file("padded.gguf"));
    CHECK(p->model().config().n_vocab == 8232);
    CHECK(p->tokenizer().decode({8192, 8231}) == "<|reserved_0|><|reserved_39|>");
    for (int32_t id : p->tokenizer().encode("<|reserved_0|> and more text", false)) CHECK(id < 8192);

    s.n_vocab = 100;  // fewer ids than the vocabulary: refused with the file named
    CHECK_THROWS_WITH_AS(write_synthetic_model(s, dir.file("small.gguf")), doctest::Contains("more than the synthetic model's n_vocab 100"),
                         GgufError);
}
