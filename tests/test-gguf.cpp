// GGUF reader and writer: real files from ../shared, round trips, and corrupted copies.
#include <cstring>
#include <random>

#include <doctest/doctest.h>

#include "tandem/gguf.h"
#include "tandem/model_config.h"
#include "test_util.h"

using namespace tandem;
using tandem_test::shared_path;

static std::string error_of(const std::string& bytes) {
    try {
        GgufFile::from_memory(bytes.data(), bytes.size(), "mem.gguf");
    } catch (const GgufError& e) {
        return e.what();
    }
    return "";
}

TEST_CASE("real files parse: stories260K, llama-2-tiny-random, the demo pair, every vocab") {
    const GgufFile f = GgufFile::open(shared_path("models/stories260K.gguf"));
    CHECK(f.version() == 3);
    const ModelConfig c = ModelConfig::from_gguf(f);
    CHECK(c.architecture == "llama");
    CHECK(c.n_vocab == 512);
    CHECK(c.n_embd == 64);
    CHECK(c.n_layer == 5);
    CHECK(c.n_head == 8);
    CHECK(c.n_head_kv == 4);
    CHECK_NOTHROW(c.validate(f.path()));
    const GgufTensorInfo* emb = f.find_tensor("token_embd.weight");
    REQUIRE(emb);
    CHECK(emb->type == GgmlType::F32);
    CHECK(emb->ne == std::vector<int64_t>{64, 512});

    const GgufFile r = GgufFile::open(shared_path("models/llama-2-tiny-random.gguf"));
    CHECK(ModelConfig::from_gguf(r).n_vocab == 32000);
    bool any_f16 = false;
    for (const auto& t : r.tensors()) any_f16 |= t.type == GgmlType::F16;
    CHECK(any_f16);

    const GgufFile d = GgufFile::open(shared_path("models/tandem-demo-client-q8_0.gguf"));
    const ModelConfig dc = ModelConfig::from_gguf(d);
    CHECK(dc.n_layer == 6);
    CHECK(dc.n_embd == 384);
    CHECK(dc.n_head_kv == 2);
    CHECK(dc.n_vocab == 8192);
    CHECK(dc.tokenizer_model == "gpt2");

    for (const char* v : {"llama-spm", "gpt-2", "phi-3", "gpt-neox", "falcon", "mpt", "starcoder", "refact",
                          "deepseek-coder", "deepseek-llm", "baichuan", "bert-bge"}) {
        INFO(v);
        const GgufFile vf = GgufFile::open(shared_path(std::string("vocab/ggml-vocab-") + v + ".gguf"));
        const GgufValue* toks = vf.find("tokenizer.ggml.tokens");
        REQUIRE(toks);
        CHECK(toks->strs.size() > 1000);
    }
}

TEST_CASE("writer round-trips every value type and tensor type") {
    GgufWriter w;
    w.set("general.architecture", GgufValue::of_string("llama"));
    w.set("a.u32", GgufValue::of_u32(7));
    w.set("a.i32", GgufValue::of_i32(-7));
    w.set("a.u64", GgufValue::of_u64(1ull << 40));
    w.set("a.f32", GgufValue::of_f32(0.25f));
    w.set("a.bool", GgufValue::of_bool(true));
    w.set("a.strs", GgufValue::of_strings({"x", "", "\xc3\xa9t\xc3\xa9"}));
    w.set("a.f32s", GgufValue::of_f32s({1.5f, -2.0f}));
    w.set("a.i32s", GgufValue::of_i32s({3, -4, 5}));
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<float> vals(512);
    for (auto& v : vals) v = u(rng);
    const GgmlType types[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1,
                              GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q5_K,
                              GgmlType::Q6_K};
    for (GgmlType t : types) w.add_tensor_from_f32(std::string("t.") + type_traits(t).name, t, {256, 2}, vals.data());
    const std::string bytes = w.to_bytes();
    const GgufFile f = GgufFile::from_memory(bytes.data(), bytes.size(), "rt.gguf");
    CHECK(f.get_int("a.u32") == 7);
    CHECK(f.get_int("a.i32") == -7);
    CHECK(f.get_int("a.u64") == (int64_t)(1ull << 40));
    CHECK(f.get_float("a.f32") == 0.25);
    CHECK(f.opt_bool("a.bool") == true);
    CHECK(f.find("a.strs")->strs == std::vector<std::string>{"x", "", "\xc3\xa9t\xc3\xa9"});
    CHECK(f.find("a.f32s")->as_f32_array() == std::vector<float>{1.5f, -2.0f});
    CHECK(f.find("a.i32s")->as_i64_array() == std::vector<int64_t>{3, -4, 5});
    CHECK_THROWS_WITH_AS(f.get_string("a.u32"), doctest::Contains("'a.u32' is u32, expected string"), GgufError);
    CHECK_THROWS_WITH_AS(f.get_int("missing.key"), doctest::Contains("missing metadata key 'missing.key'"), GgufError);
    REQUIRE(f.tensors().size() == std::size(types));
    for (GgmlType t : types) {
        const GgufTensorInfo* ti = f.find_tensor(std::string("t.") + type_traits(t).name);
        REQUIRE(ti);
        CHECK(ti->type == t);
        CHECK(ti->ne == std::vector<int64_t>{256, 2});
        CHECK(ti->offset % f.alignment() == 0);
        // bytes identical to a fresh quantization
        std::vector<uint8_t> expect(row_size(t, 512));
        type_traits(t).from_float_ref(vals.data(), expect.data(), 512);
        CHECK(std::memcmp(f.tensor_data(*ti), expect.data(), expect.size()) == 0);
    }
    // writing the parsed file again gives the same bytes
    GgufWriter w2;
    for (const auto& kv : f.metadata()) w2.set(kv.key, kv.value);
    for (const auto& t : f.tensors()) w2.add_tensor(t.name, t.type, t.ne, f.tensor_data(t), t.n_bytes);
    CHECK(w2.to_bytes() == bytes);
}

TEST_CASE("a real file re-written by the writer is byte-identical") {
    const std::string orig = tandem_test::read_file(shared_path("models/stories260K.gguf"));
    const GgufFile f = GgufFile::from_memory(orig.data(), orig.size(), "stories");
    GgufWriter w;
    for (const auto& kv : f.metadata()) w.set(kv.key, kv.value);
    for (const auto& t : f.tensors()) w.add_tensor(t.name, t.type, t.ne, f.tensor_data(t), t.n_bytes);
    const std::string again = w.to_bytes();
    const GgufFile g = GgufFile::from_memory(again.data(), again.size(), "again");
    REQUIRE(g.tensors().size() == f.tensors().size());
    for (size_t i = 0; i < f.tensors().size(); i++)
        CHECK(std::memcmp(f.tensor_data(f.tensors()[i]), g.tensor_data(g.tensors()[i]), f.tensors()[i].n_bytes) == 0);
}

// A minimal valid file, built by hand so each test can corrupt one field.
static std::string tiny_file() {
    GgufWriter w;
    w.set("general.architecture", GgufValue::of_string("llama"));
    std::vector<float> v(64, 1.0f);
    w.add_tensor_from_f32("w", GgmlType::F32, {32, 2}, v.data());
    return w.to_bytes();
}

// Offsets in tiny_file(): header 24 bytes; key "general.architecture" (8 + 20) at 24,
// value type at 52, string length at 56, "llama" at 64; tensor info at 69.
TEST_CASE("corrupted files give errors that name the problem") {
    const std::string good = tiny_file();
    REQUIRE(error_of(good).empty());
    auto patch = [&](size_t off, const void* p, size_t n) { std::string s = good; std::memcpy(&s[off], p, n); return s; };

    CHECK(error_of("").find("too small") != std::string::npos);
    CHECK(error_of(std::string("GGML") + good.substr(4)).find("bad magic") != std::string::npos);
    uint32_t v9 = 9;
    CHECK(error_of(patch(4, &v9, 4)).find("unsupported GGUF version 9") != std::string::npos);
    uint64_t huge = 1ull << 60;
    CHECK(error_of(patch(8, &huge, 8)).find("absurd tensor count") != std::string::npos);
    CHECK(error_of(patch(16, &huge, 8)).find("absurd metadata count") != std::string::npos);
    CHECK(error_of(patch(24, &huge, 8)).find("beyond the end of the file") != std::string::npos);
    uint32_t bad_type = 77;
    CHECK(error_of(patch(52, &bad_type, 4)).find("unknown value type 77") != std::string::npos);
    const char bad_utf8[2] = {'\xff', '\xfe'};
    CHECK(error_of(patch(32, bad_utf8, 2)).find("not valid UTF-8") != std::string::npos);
    // truncation at every length must be a clean error
    for (size_t n = 0; n < good.size(); n++) {
        const std::string cut = good.substr(0, n);
        INFO(n);
        CHECK(!error_of(cut).empty());
    }
    // tensor: 8 + 1 name, n_dims at 69+9=78, ne at 82 and 90, type at 98, offset at 102
    uint32_t five = 5;
    CHECK(error_of(patch(78, &five, 4)).find("dimensions") != std::string::npos);
    uint32_t unk = 31;
    CHECK(error_of(patch(98, &unk, 4)).find("unknown tensor type 31") != std::string::npos);
    uint64_t misaligned = 3;
    CHECK(error_of(patch(102, &misaligned, 8)).find("not aligned") != std::string::npos);
    uint64_t far = 1ull << 40;
    CHECK(error_of(patch(102, &far, 8)).find("extends past the end") != std::string::npos);
    uint64_t big_dim = 1ull << 62;
    CHECK(error_of(patch(82, &big_dim, 8)).find("tensor 'w'") != std::string::npos);
}

TEST_CASE("structural errors: duplicates, overlap, nested arrays, absurd arrays, bad alignment") {
    std::vector<float> v(64, 0.0f);
    {
        GgufWriter w;
        w.add_tensor_from_f32("a", GgmlType::F32, {32}, v.data());
        w.add_tensor_from_f32("b", GgmlType::F32, {32}, v.data());
        std::string s = w.to_bytes();
        // make b's offset equal a's: find b's offset field (last 8 bytes of the tensor infos)
        // tensor infos start at 24: a = 8+1+4+8+4+8 = 33 bytes, b starts at 57, its offset at 57+25
        uint64_t zero = 0;
        std::memcpy(&s[57 + 25], &zero, 8);
        CHECK(error_of(s).find("overlap") != std::string::npos);
        std::memcpy(&s[24 + 8], "b", 1);  // rename a -> b
        CHECK(error_of(s).find("duplicate tensor 'b'") != std::string::npos);
    }
    {
        GgufWriter w;
        w.set("x", GgufValue::of_u32(1));
        w.set("y", GgufValue::of_u32(2));
        std::string s = w.to_bytes();
        s[24 + 8 + 1 + 4 + 4 + 8] = 'x';  // second key "y" -> "x"
        CHECK(error_of(s).find("duplicate metadata key 'x'") != std::string::npos);
    }
    {
        GgufWriter w;
        GgufValue arr = GgufValue::of_i32s({1, 2});
        w.set("arr", arr);
        std::string s = w.to_bytes();
        const size_t et = 24 + 8 + 3 + 4;  // element type field
        uint32_t nested = 9;
        std::string s2 = s;
        std::memcpy(&s2[et], &nested, 4);
        CHECK(error_of(s2).find("nested arrays") != std::string::npos);
        uint64_t absurd = 1ull << 60;
        std::memcpy(&s[et + 4], &absurd, 8);
        CHECK(error_of(s).find("does not fit in the file") != std::string::npos);
    }
    {
        GgufWriter w;
        GgufValue strs = GgufValue::of_strings({"a"});
        w.set("s", strs);
        std::string s = w.to_bytes();
        uint64_t absurd = 1ull << 60;
        std::memcpy(&s[24 + 8 + 1 + 4 + 4], &absurd, 8);
        CHECK(error_of(s).find("does not fit in the file") != std::string::npos);
    }
    {
        GgufWriter w;
        w.set("general.alignment", GgufValue::of_u32(24));
        CHECK(error_of(w.to_bytes()).find("not a power of two") != std::string::npos);
    }
}

TEST_CASE("random byte flips never crash the reader") {
    const std::string good = tandem_test::read_file(shared_path("models/stories260K.gguf"));
    std::mt19937 rng(7);
    const size_t header_end = 4096;  // metadata and tensor infos live in the first pages
    for (int iter = 0; iter < 2000; iter++) {
        std::string s = good.substr(0, iter % 3 == 0 ? good.size() : header_end + rng() % 2048);
        for (int k = 0; k < 4; k++) s[rng() % std::min(s.size(), header_end)] = (char)rng();
        try {
            GgufFile f = GgufFile::from_memory(s.data(), s.size(), "flip");
            for (const auto& t : f.tensors()) REQUIRE(f.data_offset() + t.offset + t.n_bytes <= s.size());
        } catch (const GgufError&) {
        }
    }
}

TEST_CASE("open(): missing file, directory") {
    CHECK_THROWS_WITH_AS(GgufFile::open("/nonexistent/x.gguf"), doctest::Contains("cannot open"), GgufError);
    CHECK_THROWS_WITH_AS(GgufFile::open("/tmp"), doctest::Contains("not a regular file"), GgufError);
}
