// Tests of bench/demo_pair (issue 20), the demo client's recipe: the notes' BM25 (same-year
// sentences of other speeches), training windows that start at sentences and cover the text,
// the notes block that train.py joins from per-note tokens against build_suggest_prompt, the
// GGUF export (round trip, tokenizer copied, Q8_0 close to F32, errors naming the file), and
// the committed client: it loads and matches its recorded SHA-256 and check NLL.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "client_export.h"
#include "note_retrieval.h"
#include "tandem/sha256.h"
#include "tandem/engine.h"
#include "test_util.h"
#include "training_windows.h"

using namespace tandem;
using namespace tandem::demo;
using tandem_test::shared_path;
using tandem_test::TempDir;

static const Tokenizer& client_tokenizer() {
    static const Tokenizer tok = Tokenizer::from_gguf(GgufFile::open(shared_path("models/tandem-demo-client-q8_0.gguf")));
    return tok;
}

// ---- notes: sentence BM25 --------------------------------------------------------------------

TEST_CASE("SentenceIndex: rare shared terms rank first; own speech, repeats and per-speech limit excluded") {
    SentenceIndex ix;
    CHECK(ix.add_speech(0, {"The tsunami in the Indian Ocean killed thousands.", "short"}, 10, 300) == 1);
    CHECK(ix.add_speech(1, {"The community of nations must act together.", "We mourn the victims of the tsunami.",
                            "The international community must act."},
                        10, 300) == 3);
    CHECK(ix.add_speech(2, {"The international community must act.", "Our community welcomes the new members."}, 10, 300) == 2);
    CHECK(ix.size() == 6);
    // "tsunami" (2 sentences) is rarer than "community" (5): its sentence ranks first
    const auto hits = ix.search("the tsunami and the community", 10, 0, 10);
    REQUIRE(hits.size() == 4);  // 5 community/tsunami sentences outside speech 0, one text twice
    CHECK(ix.text(hits[0]) == "We mourn the victims of the tsunami.");
    int same = 0;
    for (size_t h : hits) {
        CHECK(ix.speech(h) != 0);  // never the query's own speech
        same += ix.text(h) == "The international community must act.";
    }
    CHECK(same == 1);  // the same text in two speeches is returned once
    const auto one = ix.search("the tsunami and the community", 10, 0, 1);  // one sentence per speech
    REQUIRE(one.size() == 2);
    CHECK(ix.speech(one[0]) != ix.speech(one[1]));
    CHECK(ix.search("xylophone", 5, -1, 5).empty());  // no shared term: nothing
    CHECK(ix.search("tsunami", 0, -1, 5).empty());
}

// ---- training windows ------------------------------------------------------------------------

TEST_CASE("cut_windows: windows start at sentences, cover the text, decode to it, stay within max_tokens") {
    const Tokenizer& tok = client_tokenizer();
    std::string text;
    std::mt19937 rng(7);
    const char* words[] = {"peace", "development", "the", "United", "Nations", "security", "climate", "of", "and", "our"};
    for (int s = 0; s < 60; s++) {
        const int n = 3 + (int)(rng() % 25);
        for (int w = 0; w < n; w++) text += std::string(w ? " " : "") + words[rng() % 10];
        text += s % 7 == 6 ? ".\n" : ". ";
    }
    const auto spans = eval::sentence_spans(text);
    REQUIRE(spans.size() == 60);
    const auto ws = cut_windows(text, spans, tok, 64, 400);
    REQUIRE(ws.size() > 3);
    size_t covered = 0;
    for (const TextWindow& w : ws) {
        CHECK(w.tokens.size() <= 64);
        bool at_sentence = false;
        for (const auto& s : spans) at_sentence |= s.begin == w.begin;
        CHECK(at_sentence);
        CHECK(tok.decode(w.tokens) == text.substr(w.begin, w.end - w.begin));
        CHECK(w.tokens == tok.encode(text.substr(w.begin, w.end - w.begin), false));
        // no gap: the next window starts inside what was read or after white space
        CHECK(text.find_first_not_of(" \n", std::min(covered, w.begin)) >= w.begin);
        covered = std::max(covered, w.end);
    }
    CHECK(covered == spans.back().end);
    CHECK_THROWS_AS(cut_windows(text, spans, tok, 0, 400), std::invalid_argument);
    // a sentence longer than the window: cut, and the next window starts at the next sentence
    const std::string long_text = std::string(2000, 'a') + ". Next one.";
    const auto lw = cut_windows(long_text, eval::sentence_spans(long_text), tok, 16, 5000);
    REQUIRE(lw.size() == 2);
    CHECK(lw[1].begin == long_text.find("Next"));
}

TEST_CASE("notes block: per-note tokens joined as train.py does equal build_suggest_prompt's block") {
    const Tokenizer& tok = client_tokenizer();
    const std::vector<std::string> notes = {
        "The key point is that the pandemic has undermined the health of our people.",
        "Ukraine's grain exports resumed in August 2022.",
        "We support the 2030 Agenda for Sustainable Development!",
        "\"Quotes\", numbers 1,234.5 and (parentheses)?",
    };
    CHECK(notes_layout_exact(tok, notes) == notes.size());
    std::vector<std::vector<int32_t>> enc;
    for (const auto& n : notes) enc.push_back(tok.encode(n, false));
    const auto joined = join_notes(enc, 2, tok.encode("\n", false), tok.encode("\n\n", false));
    CHECK(tok.decode(joined) == notes[0] + "\n" + notes[1] + "\n\n");
    CHECK(notes_block_tokens(tok, {}).empty());
    CHECK(notes_layout_exact(tok, {}) == 0);
}

TEST_CASE("select_notes: suggest()'s limits (items, token budget, a note that does not fit is skipped)") {
    const Tokenizer& tok = client_tokenizer();
    const std::string big(600, 'x');
    const std::vector<std::string> c = {"A first note about peace.", big, "A third note.", "A fourth.", "A fifth.", "A sixth."};
    const auto s = select_notes(tok, c, 4, 192);
    REQUIRE(s.size() == 4);
    CHECK(s[0] == c[0]);
    CHECK(s[1] == c[2]);  // the oversized note was skipped for smaller ones
    CHECK(select_notes(tok, c, 4, 2).empty());
}

// ---- export ------------------------------------------------------------------------------------

// A tiny model in train.py's output format: random weights, the client's vocabulary.
static void write_tiny_weights(const std::string& dir, const std::vector<int32_t>& check_tokens) {
    const int dim = 64, ffn = 96, n_vocab = 8192;
    nlohmann::json tensors = nlohmann::json::array();
    auto add = [&](const std::string& n, std::vector<int> shape) { tensors.push_back({{"name", n}, {"shape", shape}}); };
    add("token_embd.weight", {n_vocab, dim});
    add("output_norm.weight", {dim});
    for (const char* n : {"attn_norm", "ffn_norm"}) add(std::string("blk.0.") + n + ".weight", {dim});
    add("blk.0.attn_q.weight", {dim, dim});
    add("blk.0.attn_k.weight", {32, dim});
    add("blk.0.attn_v.weight", {32, dim});
    add("blk.0.attn_output.weight", {dim, dim});
    add("blk.0.ffn_gate.weight", {ffn, dim});
    add("blk.0.ffn_up.weight", {ffn, dim});
    add("blk.0.ffn_down.weight", {dim, ffn});
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 0.3f);
    std::vector<float> v;
    for (const auto& t : tensors) {
        size_t n = 1;
        for (int d : t["shape"]) n *= (size_t)d;
        for (size_t i = 0; i < n; i++) v.push_back(t["shape"].size() == 1 ? 1.0f + 0.1f * nd(rng) : nd(rng));
    }
    const size_t half = v.size() / 2;
    std::ofstream(dir + "/weights.f32.000", std::ios::binary).write((const char*)v.data(), (std::streamsize)(half * 4));
    std::ofstream(dir + "/weights.f32.001", std::ios::binary).write((const char*)(v.data() + half), (std::streamsize)((v.size() - half) * 4));
    const nlohmann::json r = {{"shape", {{"dim", dim}, {"n_layers", 1}, {"n_heads", 2}, {"n_kv_heads", 1}, {"ffn", ffn}}},
                              {"n_vocab", n_vocab}, {"rope_base", 10000.0}, {"norm_eps", 1e-5}, {"tensors", tensors},
                              {"parts", {"weights.f32.000", "weights.f32.001"}},
                              {"check", {{"tokens", check_tokens}, {"nll_mean", 0.0}}}};
    std::ofstream(dir + "/result.json") << r.dump();
}

TEST_CASE("export: F32 round trip, the client's tokenizer copied, Q8_0 close to F32") {
    TempDir d;
    const std::vector<int32_t> toks = client_tokenizer().encode("The General Assembly meets this year at a time of crisis.", true);
    write_tiny_weights(d.path, toks);
    const TrainedWeights w = read_trained_weights(d.path);
    const GgufFile src = GgufFile::open(shared_path("models/tandem-demo-client-q8_0.gguf"));
    write_client_gguf(w, src, GgmlType::F32, "tiny", "a test", d.file("f32.gguf"));
    write_client_gguf(w, src, GgmlType::Q8_0, "tiny", "a test", d.file("q8.gguf"));
    const GgufFile f = GgufFile::open(d.file("f32.gguf"));
    CHECK(f.get_string("general.architecture") == "llama");
    CHECK(f.get_int("llama.attention.head_count_kv") == 1);
    CHECK(f.get_int("llama.rope.dimension_count") == 32);
    CHECK(f.get_string("tokenizer.ggml.pre") == src.get_string("tokenizer.ggml.pre"));
    CHECK(f.find("tokenizer.ggml.merges")->strs == src.find("tokenizer.ggml.merges")->strs);
    const GgufTensorInfo* q = f.find_tensor("blk.0.attn_k.weight");
    REQUIRE(q);
    CHECK(q->ne == std::vector<int64_t>{64, 32});  // PyTorch (out, in) -> GGUF ne (in, out)
    // the bytes are the values, in order: attn_k follows token_embd, 3 norms and attn_q
    const size_t at = 8192 * 64 + 3 * 64 + 64 * 64;
    CHECK(std::memcmp(f.tensor_data(*q), w.values.data() + at, 64 * 32 * 4) == 0);
    CHECK(GgufFile::open(d.file("q8.gguf")).find_tensor("blk.0.attn_k.weight")->type == GgmlType::Q8_0);
    CHECK(GgufFile::open(d.file("q8.gguf")).find_tensor("output_norm.weight")->type == GgmlType::F32);
    const double a = engine_mean_nll(d.file("f32.gguf"), toks), b = engine_mean_nll(d.file("q8.gguf"), toks);
    CHECK(std::isfinite(a));
    CHECK(std::fabs(a - b) < 0.05 * a);
}

TEST_CASE("export: bad input names the file and the reason") {
    TempDir d;
    write_tiny_weights(d.path, {0, 1});
    std::filesystem::remove(d.file("weights.f32.001"));
    CHECK_THROWS_WITH(read_trained_weights(d.path), doctest::Contains("weights.f32.001: cannot open"));
    write_tiny_weights(d.path, {0, 1});
    std::ofstream(d.file("weights.f32.001"), std::ios::app).write("abcd", 4);
    CHECK_THROWS_WITH(read_trained_weights(d.path), doctest::Contains("more values than the manifest"));
    std::ofstream(d.file("result.json")) << "{";
    CHECK_THROWS_WITH(read_trained_weights(d.path), doctest::Contains("result.json: not JSON"));
    CHECK_THROWS_WITH(read_trained_weights(d.file("nowhere")), doctest::Contains("cannot open"));
}

// ---- the committed client --------------------------------------------------------------------

TEST_CASE("the committed demo client: its SHA-256, and the engine reproduces train.py's check NLL") {
    const std::string dir = std::string(TANDEM_SOURCE_DIR) + "/bench/demo_pair/";
    const std::string gguf = dir + "tandem-demo-client-2005-q8_0.gguf";
    const std::string bytes = tandem_test::read_file(gguf);
    Sha256 h;
    h.update(bytes.data(), bytes.size());
    const std::string want = tandem_test::read_file(gguf + ".sha256").substr(0, 64);
    CHECK(h.hex_digest() == want);
    const nlohmann::json r = nlohmann::json::parse(tandem_test::read_file(dir + "train-result.json"));
    const double got = engine_mean_nll(gguf, r["check"]["tokens"].get<std::vector<int32_t>>());
    CHECK(got == doctest::Approx(r["check"]["nll_mean"].get<double>()).epsilon(0.01));
}
