// The head-bits file (tandem/turbo_heads.h) and the CPU side of the GPU Turbo cache, in CI:
// calibration -> file -> read back is lossless; the backend factory applies the file and says
// so; a malformed file or one made for another model is refused with an error naming the
// file and the field; the GPU cache's truncation rule (turbo_truncate_keep).
#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "tandem/backend.h"
#include "tandem/gpu_context.h"
#include "tandem/synthetic_model.h"
#include "tandem/turbo_heads.h"
#include "test_util.h"

using namespace tandem;

namespace {

// head_dim 64, 4 KV heads (n_head 8: GQA 2), 3 layers.
std::string model_file(const tandem_test::TempDir& dir, const std::string& name, uint32_t seed, int64_t n_layer = 3) {
    SyntheticModelSpec s;
    s.n_layer = n_layer, s.n_embd = 512, s.n_head = 8, s.n_head_kv = 4, s.n_ff = 256, s.n_vocab = 128, s.n_ctx = 256;
    s.seed = seed;
    const std::string path = dir.file(name + ".gguf");
    write_synthetic_model(s, path);
    return path;
}

std::vector<int32_t> tokens(int n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<int32_t> t((size_t)n);
    for (auto& x : t) x = (int32_t)(rng() % 128);
    return t;
}

// Runs f, which must throw TurboHeadsError mentioning every string in `want`.
template <class F>
void expect_error(F f, std::vector<std::string> want) {
    try {
        f();
        FAIL("no error; expected one mentioning " << want[0]);
    } catch (const TurboHeadsError& e) {
        const std::string msg = e.what();
        for (const auto& w : want) CHECK_MESSAGE(msg.find(w) != std::string::npos, msg << " (missing '" << w << "')");
    }
}

}  // namespace

TEST_CASE("turbo heads: calibrate, write, read back, check against the model") {
    tandem_test::TempDir dir;
    const std::string path = model_file(dir, "m", 1);
    auto m = Model::load(path);
    const TurboHeads h = calibrate_turbo_heads(m, tokens(100, 7), 0.5f);
    REQUIRE(h.bits.size() == 3);
    REQUIRE(h.scores.size() == 3);
    CHECK(h.calibration_tokens == 100);
    for (size_t l = 0; l < 3; l++) {
        REQUIRE(h.bits[l].size() == 4);
        int n2 = 0;
        for (size_t i = 0; i < 4; i++) {
            n2 += h.bits[l][i] == 2;
            // a 2-bit head never outranks a 4-bit head of its layer
            for (size_t j = 0; j < 4; j++)
                if (h.bits[l][i] == 2 && h.bits[l][j] == 4) CHECK(h.scores[l][i] <= h.scores[l][j]);
        }
        CHECK(n2 == 2);
    }
    const std::string file = turbo_heads_path(path);
    CHECK(file == path + ".heads.json");
    write_turbo_heads(file, h);
    const TurboHeads r = read_turbo_heads(file);
    CHECK(r.bits == h.bits);
    CHECK(r.model_size == h.model_size);
    CHECK(r.model_hash == h.model_hash);
    CHECK(r.frac_2bit == doctest::Approx(0.5));
    CHECK(r.calibration_tokens == 100);
    for (size_t l = 0; l < 3; l++)
        for (size_t i = 0; i < 4; i++) CHECK(r.scores[l][i] == doctest::Approx(h.scores[l][i]).epsilon(1e-8));
    CHECK_NOTHROW(check_turbo_heads(r, *m, file));
}

TEST_CASE("turbo heads: the backend factory applies the file when turbo KV is on, and says so") {
    tandem_test::TempDir dir;
    const std::string path = model_file(dir, "m", 1);
    auto m = Model::load(path);
    const TurboHeads h = calibrate_turbo_heads(m, tokens(64, 3), 0.25f);
    write_turbo_heads(turbo_heads_path(path), h);

    ContextParams cp;
    cp.n_ctx = 128;
    CHECK(apply_turbo_heads_file(*m, cp).empty());  // turbo off: untouched
    CHECK(cp.turbo_head_bits.empty());
    cp.turbo_kv = true;
    ContextParams mine = cp;
    mine.turbo_head_bits.assign(3, std::vector<uint8_t>(4, 4));
    CHECK(apply_turbo_heads_file(*m, mine).empty());  // explicit bits win
    CHECK(apply_turbo_heads_file(*m, cp) == turbo_heads_path(path));
    CHECK(cp.turbo_head_bits == h.bits);

    std::vector<std::string> notes;
    ContextFactory f = make_backend_factory("cpu", {}, [&](const std::string& s) { notes.push_back(s); });
    REQUIRE(f);
    ContextParams tp;
    tp.n_ctx = 128, tp.turbo_kv = true, tp.n_threads = 1;
    auto ctx = f(m, tp);
    REQUIRE(notes.size() == 1);
    CHECK(notes[0].find(turbo_heads_path(path)) != std::string::npos);
    CHECK(notes[0].find("25% of heads at 2 bits") != std::string::npos);
    // the 2-bit heads shrink the cache below the all-4-bit one
    ContextParams all4 = tp;
    all4.turbo_head_bits.assign(3, std::vector<uint8_t>(4, 4));
    InferenceContext ref(m, all4);
    auto* got = dynamic_cast<InferenceContext*>(ctx.get());
    REQUIRE(got);
    CHECK(got->kv_bytes_per_token() < ref.kv_bytes_per_token());
    const int32_t t[3] = {1, 2, 3};
    ctx->eval(t, 3);
    CHECK(ctx->n_past() == 3);
}

TEST_CASE("turbo heads: a file for another model is refused, naming the file and the field") {
    tandem_test::TempDir dir;
    const std::string a = model_file(dir, "a", 1), b = model_file(dir, "b", 2), c = model_file(dir, "c", 1, 2);
    auto ma = Model::load(a), mb = Model::load(b), mc = Model::load(c);
    const TurboHeads h = calibrate_turbo_heads(ma, tokens(40, 1), 0.5f);
    const std::string file = turbo_heads_path(b);
    write_turbo_heads(file, h);  // a's choice next to b (same shape, same size, other weights)
    expect_error([&] { check_turbo_heads(read_turbo_heads(file), *mb, file); }, {file, "model.hash", "another model"});
    ContextParams cp;
    cp.turbo_kv = true;
    expect_error([&] { apply_turbo_heads_file(*mb, cp); }, {file, "model.hash"});
    expect_error([&] { check_turbo_heads(h, *mc, "c.heads.json"); }, {"c.heads.json", "n_layer"});
    TurboHeads sized = calibrate_turbo_heads(mc, tokens(40, 1), 0.5f);
    sized.bits.push_back(h.bits[0]);  // c's signature, but 3 layers: the layer count is checked first
    expect_error([&] { check_turbo_heads(sized, *ma, "x.json"); }, {"x.json", "model.size"});
    TurboHeads narrow = h;
    narrow.bits[1].pop_back();
    expect_error([&] { check_turbo_heads(narrow, *ma, "n.json"); }, {"n.json", "bits[1]", "KV heads"});
}

TEST_CASE("turbo heads: malformed files give an error naming the file and the field") {
    tandem_test::TempDir dir;
    const std::string path = model_file(dir, "m", 1);
    auto m = Model::load(path);
    const std::string file = dir.file("h.json");
    write_turbo_heads(file, calibrate_turbo_heads(m, tokens(32, 5), 0.25f));
    const std::string good = tandem_test::read_file(file);
    auto with = [&](const std::string& from, const std::string& to) {
        std::string s = good;
        const size_t at = s.find(from);
        REQUIRE(at != std::string::npos);
        s.replace(at, from.size(), to);
        tandem_test::write_file(file, s);
        return file;
    };
    expect_error([&] { read_turbo_heads(dir.file("absent.json")); }, {"absent.json", "cannot open"});
    tandem_test::write_file(file, good.substr(0, good.size() / 2));
    expect_error([&] { read_turbo_heads(file); }, {file, "not valid JSON"});
    tandem_test::write_file(file, "[1, 2]");
    expect_error([&] { read_turbo_heads(file); }, {file, "top level"});
    expect_error([&] { read_turbo_heads(with("tandem-turbo-heads", "other")); }, {file, "format"});
    expect_error([&] { read_turbo_heads(with("\"version\": 1", "\"version\": 2")); }, {file, "version"});
    expect_error([&] { read_turbo_heads(with("\"frac_2bit\"", "\"frac\"")); }, {file, "frac_2bit", "missing"});
    expect_error([&] { read_turbo_heads(with("\"n_layer\": 3", "\"n_layer\": \"3\"")); }, {file, "n_layer", "type"});
    expect_error([&] { read_turbo_heads(with("\"n_layer\": 3", "\"n_layer\": 4")); }, {file, "bits", "4"});
    expect_error([&] { read_turbo_heads(with("\"hash\": \"", "\"hash\": \"Z")); }, {file, "model.hash"});
    // the first layer's bits: "[4, 4, 2, 2]" or another order; make its first entry 3
    const size_t b = good.find("\"bits\": [") + 9;
    const size_t first = good.find('[', b) + 1;
    std::string s = good;
    s[first] = '3';
    tandem_test::write_file(file, s);
    expect_error([&] { read_turbo_heads(file); }, {file, "bits[0][0]", "4 or 2"});
}

TEST_CASE("turbo cache truncation rule: whole blocks stay, the recent buffer only while intact") {
    // T = 64. n_past in the same block as n: keep n.
    CHECK(turbo_truncate_keep(70, 100, 64) == 70);
    CHECK(turbo_truncate_keep(64, 100, 64) == 64);
    CHECK(turbo_truncate_keep(10, 64, 64) == 10);    // block 0 compressed, its INT8 slots intact
    // the recent buffer was reused by a later block: round down
    CHECK(turbo_truncate_keep(10, 65, 64) == 0);
    CHECK(turbo_truncate_keep(100, 200, 64) == 64);
    CHECK(turbo_truncate_keep(128, 200, 64) == 128);
    CHECK(turbo_truncate_keep(200, 200, 64) == 200);
    CHECK(turbo_truncate_keep(300, 200, 64) == 200);
    CHECK(turbo_truncate_keep(0, 200, 64) == 0);
}

TEST_CASE("CPU Turbo context: truncate keeps whole blocks, and re-evaluating the rest gives the first pass") {
    tandem_test::TempDir dir;
    auto m = Model::load(model_file(dir, "m", 3));
    ContextParams cp;
    cp.n_ctx = 256, cp.turbo_kv = true, cp.n_threads = 2;
    InferenceContext ctx(m, cp);
    const auto seq = tokens(200, 9);
    const int64_t nv = m->config().n_vocab;
    ctx.eval(seq.data(), 200, true);
    const std::vector<float> first(ctx.logits(), ctx.logits() + 200 * nv);
    for (int64_t n : {195, 192, 170, 10}) {
        const int64_t kept = ctx.truncate(n);
        CHECK(kept == turbo_truncate_keep(n, 200, 64));  // 195, 192, 128, 0
        CHECK(ctx.n_past() == kept);
        ctx.eval(seq.data() + kept, 200 - kept, true);
        for (int64_t r = 0; r < 200 - kept; r++)
            for (int64_t i = 0; i < nv; i++)
                REQUIRE(ctx.logits()[r * nv + i] == doctest::Approx(first[(kept + r) * nv + i]).epsilon(1e-4));
    }
}
