// Tokenizers: the llama.cpp test vectors, round trips on every vocab in ../shared, control-token
// safety, streaming decode, invalid UTF-8, and the algorithms on small in-memory vocabularies.
#include <atomic>
#include <map>
#include <thread>
#include <random>
#include <sstream>

#include <doctest/doctest.h>

#include "tandem/pretokenize.h"
#include "tandem/unicode.h"
#include "tandem/gguf.h"
#include "tandem/tokenizer.h"
#include "test_util.h"
#include "tokenizer_ref.h"

using namespace tandem;
using tandem_test::read_file;
using tandem_test::shared_path;

static std::string vocab_path(const std::string& name) { return shared_path("vocab/ggml-vocab-" + name + ".gguf"); }

static Tokenizer load(const std::string& path, std::vector<std::string>* warnings = nullptr) {
    const GgufFile f = GgufFile::open(path);
    return Tokenizer::from_gguf(f, [&](const std::string& w) {
        if (warnings) warnings->push_back(w);
    });
}

// .inp: each text followed by "\n__ggml_vocab_test__\n"; .out: one line of ids per text.
static void check_vectors(const std::string& name) {
    const Tokenizer tok = load(vocab_path(name));
    const std::string inp = read_file(vocab_path(name) + ".inp");
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> texts;
    for (size_t pos = 0;;) {
        const size_t at = inp.find(sep, pos);
        if (at == std::string::npos) {
            REQUIRE(pos == inp.size());  // the file ends with a separator
            break;
        }
        texts.push_back(inp.substr(pos, at - pos));
        pos = at + sep.size();
    }
    std::istringstream out(read_file(vocab_path(name) + ".out"));
    std::vector<std::vector<TokenId>> expected;
    for (std::string line; std::getline(out, line);) {
        std::istringstream ls(line);
        std::vector<TokenId> ids;
        for (TokenId id; ls >> id;) ids.push_back(id);
        expected.push_back(ids);
    }
    REQUIRE(texts.size() == expected.size());
    REQUIRE(texts.size() > 30);
    for (size_t i = 0; i < texts.size(); ++i) {
        INFO(name << " text #" << i << ": '" << texts[i] << "'");
        const std::vector<TokenId> got = tok.encode(texts[i], /*add_bos=*/false);
        CHECK(got == expected[i]);
        CHECK(tok.decode(got) == texts[i]);
    }
}

TEST_CASE("llama-spm reproduces the llama.cpp test vectors exactly") { check_vectors("llama-spm"); }
TEST_CASE("gpt-2 reproduces the llama.cpp test vectors exactly") { check_vectors("gpt-2"); }

// Varied text: CJK, emoji (incl. ZWJ sequences), combining marks, RTL, digit and whitespace
// runs, code, contractions, symbols, control characters.
static const char* const kRoundTripTexts[] = {
    "",
    " ",
    "Hello world",
    "  leading and trailing spaces  ",
    "\n\n\ttabs\tand\r\nnewlines\n",
    "日本語のテキストと中文文本，还有한국어 텍스트。",
    "emoji 🦙🚀 family 👨‍👩‍👧‍👦 flags 🇫🇷🇩🇪 skin 👍🏽",
    "combining: e\u0301 a\u0308 n\u0303 Z\u0351\u0352\u0353 \u0915\u094D\u0937",
    "RTL: שלום עולם, مرحبا بالعالم 123",
    "digits 1234567890 0.5 3,141,592 ١٢٣ ٤٥٦",
    "whitespace      runs\u00A0nbsp\u2003em\u3000ideographic",
    "int main(int argc, char** argv) {\n    return argc > 1 ? 0 : -1; // ok\n}\n",
    "def f(x):\n\treturn x**2  # comment\n\n\n",
    "I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL",
    "symbols: $100 + <tag> = ^~| `code` © ® ™ € £ ¥ ½ ∑ ∞ ≠ ≤ →",
    "ΑΒΓ αβγ Привет мир Ελληνικά ქართული",
    "mixed\u200Bzero\u200Bwidth\uFEFFbom",
    "<s> </s> <|endoftext|> <|im_start|>user <unk> [PAD] <0x41>",
    "a",
    "\x7F\x01\x02 control chars \x1B[0m",
    "very long word: Pneumonoultramicroscopicsilicovolcanoconiosis-antidisestablishmentarianism",
};

static void check_round_trips(const Tokenizer& tok, const std::string& name) {
    for (const char* text : kRoundTripTexts) {
        INFO(name << ": '" << text << "'");
        const std::vector<TokenId> ids = tok.encode(text);
        CHECK(tok.decode(ids) == text);
        for (TokenId id : ids) CHECK(tok.token_type(id) != TokenType::Control);
        // The stream decoder gives the same text, one token at a time.
        StreamDecoder sd(tok);
        std::string streamed;
        for (TokenId id : ids) {
            sd.push(id, streamed);
            CHECK(unicode::utf8_valid(streamed));
        }
        sd.finish(streamed);
        CHECK(streamed == text);
    }
}

TEST_CASE("decode(encode(text)) == text on every vocab and model") {
    for (const char* v : {"llama-spm", "gpt-2", "phi-3", "gpt-neox", "falcon", "mpt", "starcoder", "refact",
                          "deepseek-coder", "deepseek-llm", "baichuan"}) {
        std::vector<std::string> warnings;
        const Tokenizer tok = load(vocab_path(v), &warnings);
        check_round_trips(tok, v);
        if (std::string(v) == "gpt-neox") {
            REQUIRE(warnings.size() == 1);  // no tokenizer.ggml.pre in that file
            CHECK(warnings[0].find("tokenizer.ggml.pre is missing") != std::string::npos);
        } else {
            CHECK(warnings.empty());
        }
    }
    for (const char* m : {"stories260K", "llama-2-tiny-random", "tandem-demo-client-q8_0"}) {
        const Tokenizer tok = load(shared_path(std::string("models/") + m + ".gguf"));
        check_round_trips(tok, m);
    }
}

TEST_CASE("the models' tokenizers: kinds, sizes, BOS") {
    const Tokenizer s = load(shared_path("models/stories260K.gguf"));
    CHECK(s.kind() == TokenizerKind::Spm);
    CHECK(s.n_tokens() == 512);
    CHECK(s.bos() == 1);
    CHECK(s.add_bos());
    const std::vector<TokenId> ids = s.encode("Once upon a time", true);
    REQUIRE(ids.size() >= 2);
    CHECK(ids[0] == 1);
    CHECK(s.decode(ids) == "Once upon a time");

    const Tokenizer r = load(shared_path("models/llama-2-tiny-random.gguf"));
    CHECK(r.n_tokens() == 32000);
    // Same vocabulary as llama-spm: same tokens.
    const Tokenizer l = load(vocab_path("llama-spm"));
    CHECK(r.encode("The quick brown fox jumps over the lazy dog.") ==
          l.encode("The quick brown fox jumps over the lazy dog."));

    const Tokenizer d = load(shared_path("models/tandem-demo-client-q8_0.gguf"));
    CHECK(d.kind() == TokenizerKind::Bpe);
    CHECK(d.n_tokens() == 8192);
    CHECK(d.bos() == 0);
    CHECK(d.eos() == 0);
    CHECK(d.add_bos());
    CHECK(d.pre_name() == "gpt-2");
    const std::vector<TokenId> di = d.encode("The General Assembly", true);
    CHECK(di[0] == 0);
    CHECK(di.size() < 8);  // UN vocabulary: a few tokens, not bytes
}

TEST_CASE("bert (WordPiece) is rejected with a clear error") {
    const GgufFile f = GgufFile::open(vocab_path("bert-bge"));
    try {
        Tokenizer::from_gguf(f);
        FAIL("bert vocab accepted");
    } catch (const TokenizerError& e) {
        const std::string msg = e.what();
        CHECK(msg.find("unsupported tokenizer model 'bert'") != std::string::npos);
        CHECK(msg.find("ggml-vocab-bert-bge.gguf") != std::string::npos);
    }
}

TEST_CASE("user text never becomes control tokens; encode_segments does") {
    const Tokenizer l = load(vocab_path("llama-spm"));
    for (TokenId id : l.encode("<s>hello</s>")) CHECK(l.token_type(id) != TokenType::Control);
    const std::vector<TokenId> seg = l.encode_segments({{"<s>", true}, {"hello", false}, {"</s>", true}}, false);
    REQUIRE(seg.size() >= 3);
    CHECK(seg.front() == 1);
    CHECK(seg.back() == 2);
    CHECK(l.decode(seg) == "hello");
    CHECK(l.decode(seg, /*render_special=*/true) == "<s>hello</s>");

    const Tokenizer g = load(vocab_path("gpt-2"));
    const std::vector<TokenId> ids = g.encode("<|endoftext|>");
    CHECK(std::find(ids.begin(), ids.end(), 50256) == ids.end());
    CHECK(g.decode(ids) == "<|endoftext|>");
    CHECK(g.find_special("<|endoftext|>") == 50256);
    CHECK(g.find_special("hello") == -1);
    const std::vector<TokenId> gs = g.encode_segments({{"Hi", false}, {"<|endoftext|>", true}}, false);
    CHECK(gs.back() == 50256);
    CHECK_THROWS_AS(g.encode_segments({{"<|im_start|>", true}}, false), TokenizerError);

    // phi-3 marks "</s>" user-defined: still not produced from text.
    const Tokenizer p = load(vocab_path("phi-3"));
    for (TokenId id : p.encode("</s><|assistant|><|endoftext|>")) {
        CHECK(p.token_type(id) != TokenType::Control);
        CHECK(p.token_type(id) != TokenType::UserDefined);
    }
    CHECK(p.find_special("<|assistant|>") == 32001);
}

TEST_CASE("invalid UTF-8 becomes U+FFFD, never a crash") {
    const std::string bad[] = {"\xFF", "ab\xC3", "\xE2\x82", "\xED\xA0\x80", "\xC0\xAF", "\xF4\x90\x80\x80",
                               std::string("nul\0inside", 10), "\x80\x80\x80 x"};
    for (const char* v : {"llama-spm", "gpt-2", "deepseek-llm", "falcon"}) {
        const Tokenizer tok = load(vocab_path(v));
        for (const std::string& b : bad) {
            INFO(v << " input bytes size " << b.size());
            const std::string text = tok.decode(tok.encode(b));
            CHECK(text == unicode::utf8_sanitize(b));
            CHECK(unicode::utf8_valid(text));
        }
    }
    CHECK(unicode::utf8_sanitize("a\xFF" "b") == "a\xEF\xBF\xBD" "b");
    CHECK(unicode::utf8_sanitize("\xE2\x82" "x") == "\xEF\xBF\xBD" "x");  // one per maximal subpart
}

TEST_CASE("stream decoder holds back split sequences and byte-fallback tokens") {
    const Tokenizer l = load(vocab_path("llama-spm"));
    // U+1F999 has no piece in llama: 4 byte-fallback tokens.
    const std::vector<TokenId> ids = l.encode("a🦙b");
    std::vector<std::string> chunks;
    StreamDecoder sd(l);
    for (TokenId id : ids) {
        std::string s;
        sd.push(id, s);
        chunks.push_back(s);
    }
    std::string all;
    for (auto& c : chunks) all += c;
    CHECK(all == "a🦙b");
    size_t empty = 0;
    for (auto& c : chunks) empty += c.empty();
    CHECK(empty >= 2);  // the first bytes of the emoji were held back

    // A truncated stream ends with one replacement character.
    StreamDecoder s2(l);
    std::string out;
    s2.push(l.encode("🦙")[1], out);  // "▁" then <0xF0>: push the <0xF0> alone
    CHECK(out.empty());
    s2.finish(out);
    CHECK(out == "\xEF\xBF\xBD");

    // gpt-2: byte-level tokens of one character arrive separately.
    const Tokenizer g = load(vocab_path("gpt-2"));
    const std::vector<TokenId> gi = g.encode("🦙");
    REQUIRE(gi.size() >= 2);
    StreamDecoder gs(g);
    std::string first;
    gs.push(gi[0], first);
    CHECK(first.empty());
    CHECK_THROWS_AS(gs.push(-1, first), TokenizerError);
    CHECK_THROWS_AS(g.decode({50257}), TokenizerError);
}

TEST_CASE("unicode property tables") {
    using namespace unicode;
    CHECK(cpt_flags('a') == kLetter);
    CHECK(cpt_flags('5') == kNumber);
    CHECK((cpt_flags(' ') & kWhitespace));
    CHECK((cpt_flags('\n') & kWhitespace));
    CHECK(cpt_flags('!') == kPunct);
    CHECK(cpt_flags('$') == kSymbol);
    CHECK(cpt_flags(0x4E2D) == kLetter);   // 中
    CHECK(cpt_flags(0x0661) == kNumber);   // ARABIC-INDIC ONE
    CHECK(cpt_flags(0x0301) == kMark);     // combining acute
    CHECK(cpt_flags(0x1F999) == kSymbol);  // 🦙
    CHECK((cpt_flags(0x3000) & kWhitespace));
    CHECK((cpt_flags(0x00A0) & kWhitespace));
    CHECK(!(cpt_flags(0x200B) & kWhitespace));  // zero width space is Cf, not White_Space
    CHECK(cpt_flags(0x0378) == 0);              // unassigned
    CHECK(cpt_flags(0x110000) == 0);
    for (int b = 0; b < 256; ++b) CHECK(cpt_to_byte(byte_to_cpt((uint8_t)b)) == b);
    CHECK(byte_to_cpt(' ') == 0x120);  // 'Ġ'
    CHECK(utf8_incomplete_tail("a\xF0\x9F") == 2);
    CHECK(utf8_incomplete_tail("a\xF0\x9F\xA6\x99") == 0);
    CHECK(utf8_incomplete_tail("a\xFF") == 0);
}

// Chunks of `text` under a pre-tokenizer.
static std::vector<std::string> split(PreType type, const std::string& text) {
    std::vector<uint32_t> cpts, ends, scratch;
    unicode::utf8_to_cpts(text, cpts);
    std::vector<uint8_t> flags;
    for (uint32_t c : cpts) flags.push_back(unicode::cpt_flags(c));
    pretokenize(type, cpts.data(), flags.data(), cpts.size(), ends, scratch);
    std::vector<std::string> out;
    uint32_t begin = 0;
    for (uint32_t e : ends) {
        std::string s;
        for (uint32_t i = begin; i < e; ++i) unicode::utf8_append(cpts[i], s);
        out.push_back(s);
        begin = e;
    }
    return out;
}

using Chunks = std::vector<std::string>;

TEST_CASE("pre-tokenizer regexes") {
    CHECK(split(PreType::Gpt2, "Hello world's  2024 !!") ==
          Chunks{"Hello", " world", "'s", " ", " 2024", " !!"});
    CHECK(split(PreType::Gpt2, "a   \n") == Chunks{"a", "   \n"});
    CHECK(split(PreType::Gpt2, "I'M") == Chunks{"I", "'", "M"});  // case-sensitive contractions
    CHECK(split(PreType::Llama3, "I'M 12345 ok\n\n  x") == Chunks{"I", "'M", " ", "123", "45", " ok", "\n\n", " ", " x"});
    CHECK(split(PreType::Llama3, "(hello)\n") == Chunks{"(hello", ")\n"});
    CHECK(split(PreType::Qwen2, "123") == Chunks{"1", "2", "3"});
    CHECK(split(PreType::Starcoder, "x 123") == Chunks{"x", " ", "1", "2", "3"});
    CHECK(split(PreType::Falcon, "a+=1234") == Chunks{"a", "+=", "123", "4"});
    CHECK(split(PreType::Default, "a+=1234") == Chunks{"a", "+=", "123", "4"});
    CHECK(split(PreType::DeepseekCoder, "int x=中文 7\n") == Chunks{"int", " x", "=", "中文", " ", "7", "\n"});
    CHECK(split(PreType::DeepseekLlm, "Hi, 世界 42  ") == Chunks{"Hi", ",", " ", "世界", " ", "42", "  "});
    PreType t;
    CHECK(pre_type_from_name("llama-bpe", t));
    CHECK(t == PreType::Llama3);
    CHECK(pre_type_from_name("smollm", t));
    CHECK(t == PreType::Starcoder);
    CHECK(!pre_type_from_name("no-such-pre", t));
}

TEST_CASE("SPM on a small vocabulary: highest score wins, byte fallback, unk") {
    VocabSpec v;
    v.model = "llama";
    v.tokens = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "c", "ab", "bc", "\xE2\x96\x81" "a", "<0x7A>"};
    v.types = {2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 6};
    v.scores = {0, 0, 0, -1, -1, -1, -1, -3, -2, -5, 0};
    v.unk = 0;
    v.bos = 1;
    const Tokenizer t = Tokenizer::from_spec(v);
    // "▁abc": pairs ▁a(-5) ab(-3) bc(-2): bc merges first, then ▁a.
    CHECK(t.encode("abc") == std::vector<TokenId>{9, 8});
    CHECK(t.encode("z") == std::vector<TokenId>{3, 10});  // z has only a byte token
    CHECK(t.encode("q") == std::vector<TokenId>{3, 0});   // no piece, no byte token: <unk>
    CHECK(t.decode({9, 8}) == "abc");
    CHECK(t.encode("abc", true).front() == 1);
    v.scores = {0, 0, 0, -1, -1, -1, -1, -1, -2, -5, 0};  // now ab beats bc
    CHECK(Tokenizer::from_spec(v).encode("abc") == std::vector<TokenId>{3, 7, 6});
}

TEST_CASE("BPE on a small vocabulary: merges apply by rank; unknown pre warns") {
    VocabSpec v;
    v.model = "gpt2";
    v.pre = "no-such-pre";
    for (int b = 0; b < 256; ++b) {
        std::string s;
        unicode::utf8_append(unicode::byte_to_cpt((uint8_t)b), s);
        v.tokens.push_back(s);
    }
    v.tokens.push_back("ab");   // 256
    v.tokens.push_back("bc");   // 257
    v.tokens.push_back("abc");  // 258
    v.merges = {"b c", "a b", "a bc", "zz q"};
    std::vector<std::string> warnings;
    Tokenizer t = Tokenizer::from_spec(v, [&](const std::string& w) { warnings.push_back(w); });
    REQUIRE(warnings.size() == 2);
    CHECK(warnings[0].find("unknown pre-tokenizer 'no-such-pre'") != std::string::npos);
    CHECK(warnings[1].find("1 of 4 entries of tokenizer.ggml.merges") != std::string::npos);
    CHECK(t.pre_name() == "gpt-2");
    CHECK(t.encode("abc") == std::vector<TokenId>{258});  // b c (rank 0), then a bc (rank 2)
    CHECK(t.encode("abd") == std::vector<TokenId>{256, 'd'});
    CHECK(t.decode(t.encode("x y")) == "x y");
    v.merges = {"a b", "b c"};
    t = Tokenizer::from_spec(v, [](const std::string&) {});
    CHECK(t.encode("abc") == std::vector<TokenId>{256, 'c'});

    v.model = "t5";
    CHECK_THROWS_WITH_AS(Tokenizer::from_spec(v), doctest::Contains("unsupported tokenizer model 't5'"), TokenizerError);
    v.model = "gpt2";
    v.types = {1, 2};
    CHECK_THROWS_WITH_AS(Tokenizer::from_spec(v), doctest::Contains("token_type has 2 entries"), TokenizerError);
}

TEST_CASE("random bytes: encode never throws, decode round-trips sanitized text") {
    const Tokenizer l = load(vocab_path("llama-spm"));
    const Tokenizer g = load(vocab_path("gpt-2"));
    std::mt19937 rng(42);
    for (int iter = 0; iter < 300; ++iter) {
        std::string s(rng() % 40, '\0');
        for (char& c : s) c = (char)(rng() % 4 == 0 ? rng() % 256 : "ab \n\xC3\xA9\xE4\xB8\xAD"[rng() % 9]);
        const std::string clean = unicode::utf8_sanitize(s);
        CHECK(l.decode(l.encode(s)) == clean);
        CHECK(g.decode(g.encode(s)) == clean);
    }
}

TEST_CASE("inherited limits found by the fuzzer: U+2581 in SPM text, bytes a BPE vocab lacks") {
    const Tokenizer l = load(vocab_path("llama-spm"));
    CHECK(l.decode(l.encode(" Hello\xE2\x96\x81" "d")) == " Hello d");
    const Tokenizer f = load(vocab_path("falcon"));
    CHECK(f.encode("\v").empty());  // falcon has no token for byte 0x0B
    CHECK(f.decode(f.encode("a\vb")) == "ab");
    const Tokenizer g = load(vocab_path("gpt-2"));
    CHECK(g.decode(g.encode("a\vb")) == "a\vb");
}

TEST_CASE("a tokenizer is safe to use from several threads (per-thread word caches)") {
    const Tokenizer g = load(vocab_path("gpt-2"));
    const Tokenizer l = load(vocab_path("llama-spm"));
    const std::string text = read_file(shared_path("corpus/wikitext-2-test.raw")).substr(0, 20000);
    const std::vector<TokenId> want_g = g.encode(text), want_l = l.encode(text);
    std::vector<std::thread> threads;
    std::atomic<int> bad{0};
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int r = 0; r < 3; ++r) {
                if (g.encode(text) != want_g) ++bad;
                if (l.encode(text) != want_l) ++bad;
            }
        });
    }
    for (auto& th : threads) th.join();
    CHECK(bad == 0);
    CHECK(g.decode(want_g) == text);
    CHECK(l.decode(want_l) == text);
}

TEST_CASE("long degenerate inputs stay fast (no quadratic paths)") {
    const Tokenizer l = load(vocab_path("llama-spm"));
    const Tokenizer g = load(vocab_path("gpt-2"));
    const Tokenizer d = load(vocab_path("deepseek-llm"));
    const std::string big_spaces(200000, ' '), big_letters(200000, 'a'), big_newlines(200000, '\n');
    std::string mixed;
    for (int i = 0; i < 20000; ++i) mixed += "  \t\n x";
    for (const std::string* s : std::vector<const std::string*>{&big_spaces, &big_letters, &big_newlines, &mixed}) {
        for (const Tokenizer* t : std::vector<const Tokenizer*>{&l, &g, &d}) {
            const std::vector<TokenId> ids = t->encode(*s);
            CHECK(t->decode(ids) == *s);
            CHECK(ids.size() <= s->size() + 1);  // e.g. gpt-2 has no multi-space tokens
        }
    }
}

// The optimized tokenizer (flat maps, word splitting, word cache) against the plain reference
// twins in tokenizer_ref.h, on prose, the varied texts, and random text.
TEST_CASE("optimized encode == reference twin (llama-spm, gpt-2 under every pre-tokenizer, real files)") {
    std::vector<std::string> texts(std::begin(kRoundTripTexts), std::end(kRoundTripTexts));
    const std::string prose = read_file(shared_path("corpus/wikitext-2-test.raw"));
    for (size_t at = 0; at < 60000; at += 3000) texts.push_back(prose.substr(at, 3000));
    std::mt19937 rng(7);
    const char* alphabet[] = {"a", "Z", " ", "  ", "\n", "\t", "1", "23", "'s", "'LL", ".", "!?", "中", "文", "é",
                              "\xCC\x81", "🦙", "\xE2\x96\x81", "$", "<", "|", "`", "\r\n", "\xE3\x80\x80", "Ω"};
    for (int i = 0; i < 200; ++i) {
        std::string t;
        for (int k = rng() % 30; k > 0; --k) t += alphabet[rng() % (sizeof alphabet / sizeof *alphabet)];
        texts.push_back(t);
    }

    {
        const GgufFile f = GgufFile::open(vocab_path("llama-spm"));
        const Tokenizer tok = Tokenizer::from_gguf(f);
        const tandem_ref::RefSpm ref = tandem_ref::load_ref_spm(f);
        for (const std::string& t : texts) {
            INFO("llama-spm: '" << t << "'");
            const std::vector<TokenId> got = tok.encode(t);
            CHECK(std::vector<int>(got.begin(), got.end()) == (t.empty() ? std::vector<int>{} : ref.encode(t)));
        }
    }
    const GgufFile g = GgufFile::open(vocab_path("gpt-2"));
    for (PreType pre : {PreType::Gpt2, PreType::Default, PreType::Llama3, PreType::Qwen2, PreType::Falcon,
                        PreType::Starcoder, PreType::DeepseekLlm, PreType::DeepseekCoder}) {
        VocabSpec spec;
        spec.model = "gpt2";
        spec.pre = pre_type_name(pre);
        spec.tokens = g.find("tokenizer.ggml.tokens")->strs;
        spec.merges = g.find("tokenizer.ggml.merges")->strs;
        for (int64_t x : g.find("tokenizer.ggml.token_type")->as_i64_array()) spec.types.push_back((int32_t)x);
        const Tokenizer tok = Tokenizer::from_spec(spec);
        const tandem_ref::RefBpe ref = tandem_ref::load_ref_bpe(g, pre);
        for (const std::string& t : texts) {
            INFO("gpt-2 vocab, pre " << pre_type_name(pre) << ": '" << t << "'");
            const std::vector<TokenId> got = tok.encode(t);
            CHECK(std::vector<int>(got.begin(), got.end()) == ref.encode(t));
        }
    }
    for (const char* v : {"deepseek-llm", "falcon", "starcoder"}) {
        const GgufFile f = GgufFile::open(vocab_path(v));
        const Tokenizer tok = Tokenizer::from_gguf(f);
        PreType pre;
        REQUIRE(pre_type_from_name(f.get_string("tokenizer.ggml.pre"), pre));
        const tandem_ref::RefBpe ref = tandem_ref::load_ref_bpe(f, pre);
        for (const std::string& t : texts) {
            INFO(v << ": '" << t << "'");
            const std::vector<TokenId> got = tok.encode(t);
            CHECK(std::vector<int>(got.begin(), got.end()) == ref.encode(t));
        }
    }
}
