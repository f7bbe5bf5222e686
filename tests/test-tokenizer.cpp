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

// ---- ids from llama.cpp on every vocabulary -------------------------------------------------
// These ids come from llama.cpp's own tokenizer, not from this one: llama-tokenize of
// ggml-org/llama.cpp (snapshot d32676d of the unslothai/llama.cpp mirror, 2026-08-18), built
// outside this repository and run on each text as
//     llama-tokenize -m ggml-vocab-NAME.gguf --stdin --ids --no-bos --no-escape --log-disable
// with --no-parse-special where parse_special is false. Checked by hand: in gpt-neox and mpt,
// "quietly,  then   stopped" is ' quietly' ',' '  ' 'then' '   ' 'sto' 'pped' '.', where 50276
// ('  ') and 50275 ('   ') are user-defined tokens and 'then' lost its space to the first; runs
// longer than 24 spaces take the 24-space token 50254 first; deepseek's 'ø' is its user-defined
// token (deepseek-llm 100002, deepseek-coder 32006), as is deepseek-coder's "<|EOT|>" (32021);
// phi-3's "</s>" is user-defined in its file, but llama.cpp treats end-of-generation texts as
// control tokens, so without parse_special it stays the pieces '</' 's' '>'.
struct RefText {
    const char* text;
    bool parse_special;
};

static const RefText kRefTexts[] = {
    {"He went quietly,  then   stopped.", false},
    {"def f(x):\n    if x:\n        return 1\n    return 0\n", false},
    {"Fran\xC3\xA7" "ais: \xC3\xA7" "a, \xCF\x80 \xE2\x89\x88 3.14, Tandem\xE2\x84\xA2 \xE2\x80\x94 na\xC3\xAFve caf\xC3\xA9", false},
    {"  two leading, two trailing  ", false},
    {"a" "                              " "b", false},  // 30 spaces
    {"<|endoftext|>Hi<s></s>", false},
    {"<|endoftext|>Hi<s></s>", true},
    {"<\xEF\xBD\x9C" "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>x <|User|> y", true},
    {"<\xEF\xBD\x9C" "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>x <|User|> y", false},
    {"s\xC3\xB8ster \xC3\xB8l [PAD50277] <|EOT|>", false},
    {"a</s> b</s>  c", false},
};

static const std::pair<const char*, std::vector<std::vector<TokenId>>> kRefIds[] = {
    {"gpt-neox",
     {
         {1328, 2427, 16092, 13, 50276, 7461, 50275, 11769, 1882, 15},
         {1545, 269, 9, 89, 2262, 187, 50274, 338, 1269, 27, 187, 50270, 2309, 209, 18, 187, 50274, 2309, 209, 17, 187},
         {44630, 3314, 4631, 27, 36646, 13, 8095, 8611, 219, 209, 20, 15, 1047, 13, 308, 25439, 14313, 209, 1128, 36060, 36241},
         {50276, 9389, 4283, 13, 767, 28417, 50276},
         {66, 50254, 50272, 67},
         {29, 93, 423, 1171, 1156, 49651, 12764, 29, 84, 3073, 84, 31},
         {0, 12764, 29, 84, 3073, 84, 31},
         {29, 20422, 239, 2043, 10897, 212, 1171, 10897, 212, 36817, 20422, 239, 31, 89, 209, 29, 93, 6989, 49651, 340},
         {29, 20422, 239, 2043, 10897, 212, 1171, 10897, 212, 36817, 20422, 239, 31, 89, 209, 29, 93, 6989, 49651, 340},
         {84, 7256, 2971, 37292, 77, 209, 50277, 209, 29, 93, 38, 2415, 49651},
         {66, 870, 84, 31, 270, 870, 84, 31, 50276, 68},
     }},
    {"mpt",
     {
         {1328, 2427, 16092, 13, 50276, 7461, 50275, 11769, 1882, 15},
         {1545, 269, 9, 89, 2262, 187, 50274, 338, 1269, 27, 187, 50270, 2309, 337, 187, 50274, 2309, 470, 187},
         {44630, 3314, 4631, 27, 36646, 13, 8095, 8611, 219, 495, 15, 1047, 13, 308, 25439, 14313, 1905, 36060, 36241},
         {50276, 9389, 4283, 13, 767, 28417, 50276},
         {66, 50254, 50272, 67},
         {29, 93, 423, 1171, 1156, 49651, 12764, 29, 84, 3073, 84, 31},
         {0, 12764, 29, 84, 3073, 84, 31},
         {29, 20422, 239, 2043, 10897, 212, 1171, 10897, 212, 36817, 20422, 239, 31, 89, 654, 93, 6989, 49651, 340},
         {29, 20422, 239, 2043, 10897, 212, 1171, 10897, 212, 36817, 20422, 239, 31, 89, 654, 93, 6989, 49651, 340},
         {84, 7256, 2971, 37292, 77, 209, 50277, 654, 93, 38, 2415, 49651},
         {66, 870, 84, 31, 270, 870, 84, 31, 50276, 68},
     }},
    {"deepseek-coder",
     {
         {2439, 2661, 18055, 11, 207, 930, 243, 8585, 13},
         {1551, 267, 7, 87, 1772, 185, 315, 562, 1371, 25, 185, 436, 967, 207, 16, 185, 315, 967, 207, 15, 185},
         {4423, 6889, 262, 25, 207, 3510, 11, 207, 19226, 207, 156, 218, 217, 207, 18, 13, 16, 19, 11, 323, 384, 369, 14961, 207, 1962, 10012, 2854, 312, 26632, 584},
         {207, 979, 5877, 11, 979, 1355, 5964, 243},
         {64, 13927, 270},
         {27, 91, 408, 990, 818, 91, 29, 11041, 27, 82, 784, 14, 82, 29},
         {27, 91, 408, 990, 818, 91, 29, 11041, 27, 82, 784, 14, 82, 29},
         {32013, 87, 207, 32019, 320},
         {27, 169, 121, 237, 946, 11028, 210, 990, 11028, 210, 18119, 720, 169, 121, 237, 29, 87, 207, 32019, 320},
         {82, 32006, 3546, 207, 32006, 75, 821, 47, 3195, 20, 15, 17, 22, 22, 60, 207, 32021},
         {64, 27, 14, 82, 29, 270, 27, 14, 82, 7471, 258},
     }},
    {"deepseek-llm",
     {
         {2450, 2674, 17987, 11, 207, 937, 243, 8583, 13},
         {1558, 267, 7, 87, 1780, 185, 300, 565, 1376, 25, 185, 391, 972, 207, 16, 185, 300, 972, 207, 15, 185},
         {41329, 1337, 10113, 25, 94459, 64, 11, 40997, 207, 32552, 217, 207, 18, 13, 16, 19, 11, 323, 59509, 14917, 207, 1972, 10010, 2865, 313, 26506, 587},
         {207, 984, 5881, 11, 984, 38506, 243},
         {64, 12278, 270},
         {27, 91, 409, 994, 822, 66325, 11007, 27, 82, 1575, 82, 29},
         {27, 91, 409, 994, 822, 66325, 11007, 27, 82, 1575, 82, 29},
         {100000, 87, 459, 91, 5726, 66325, 320},
         {27, 68940, 237, 951, 11009, 210, 994, 11009, 210, 53582, 68940, 237, 29, 87, 459, 91, 5726, 66325, 320},
         {82, 100002, 3559, 207, 100002, 75, 825, 73646, 20, 15, 17, 22, 22, 60, 459, 91, 36, 2787, 66325},
         {64, 535, 82, 29, 270, 535, 82, 29, 207, 258},
     }},
    {"llama-spm",
     {
         {940, 3512, 25970, 29892, 29871, 769, 259, 11084, 29889},
         {822, 285, 29898, 29916, 1125, 13, 1678, 565, 921, 29901, 13, 4706, 736, 29871, 29896, 13, 1678, 736, 29871, 29900, 13},
         {1352, 6899, 29901, 29871, 4277, 29892, 29871, 30170, 29871, 30583, 29871, 29941, 29889, 29896, 29946, 29892, 15066, 2310, 30536, 813, 1055, 30085, 345, 274, 28059},
         {259, 1023, 8236, 29892, 1023, 25053, 259},
         {263, 462, 795, 289},
         {529, 29989, 355, 974, 726, 29989, 29958, 18567, 29966, 29879, 2565, 29879, 29958},
         {529, 29989, 355, 974, 726, 29989, 29958, 18567, 1, 2},
         {529, 242, 192, 159, 463, 310, 10541, 242, 192, 159, 29958, 29916, 529, 29989, 2659, 29989, 29958, 343},
         {529, 242, 192, 159, 463, 310, 10541, 242, 192, 159, 29958, 29916, 529, 29989, 2659, 29989, 29958, 343},
         {269, 30077, 2475, 29871, 30077, 29880, 518, 29925, 3035, 29945, 29900, 29906, 29955, 29955, 29962, 529, 29989, 29923, 2891, 29989, 29958},
         {263, 829, 29879, 29958, 289, 829, 29879, 29958, 29871, 274},
     }},
    {"phi-3",
     {
         {940, 3512, 25970, 29892, 29871, 769, 259, 11084, 29889},
         {822, 285, 29898, 29916, 1125, 13, 1678, 565, 921, 29901, 13, 4706, 736, 29871, 29896, 13, 1678, 736, 29871, 29900, 13},
         {1352, 6899, 29901, 29871, 4277, 29892, 29871, 30170, 29871, 30583, 29871, 29941, 29889, 29896, 29946, 29892, 15066, 2310, 30536, 813, 1055, 30085, 345, 274, 28059},
         {259, 1023, 8236, 29892, 1023, 25053, 259},
         {263, 462, 795, 289},
         {529, 29989, 355, 974, 726, 29989, 29958, 18567, 29966, 29879, 2565, 29879, 29958},
         {32000, 6324, 1, 2},
         {529, 242, 192, 159, 463, 310, 10541, 242, 192, 159, 29958, 29916, 529, 29989, 2659, 29989, 29958, 343},
         {529, 242, 192, 159, 463, 310, 10541, 242, 192, 159, 29958, 29916, 529, 29989, 2659, 29989, 29958, 343},
         {269, 30077, 2475, 29871, 30077, 29880, 518, 29925, 3035, 29945, 29900, 29906, 29955, 29955, 29962, 529, 29989, 29923, 2891, 29989, 29958},
         {263, 829, 29879, 29958, 289, 829, 29879, 29958, 29871, 274},
     }},
    {"gpt-2",
     {
         {1544, 1816, 12703, 11, 220, 788, 220, 220, 5025, 13},
         {4299, 277, 7, 87, 2599, 198, 220, 220, 220, 611, 2124, 25, 198, 220, 220, 220, 220, 220, 220, 220, 1441, 352, 198, 220, 220, 220, 1441, 657, 198},
         {38848, 16175, 15152, 25, 6184, 100, 64, 11, 18074, 222, 15139, 230, 513, 13, 1415, 11, 309, 30025, 8151, 851, 41492, 40304},
         {220, 734, 3756, 11, 734, 25462, 220, 220},
         {64, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 220, 275},
         {27, 91, 437, 1659, 5239, 91, 29, 17250, 27, 82, 12240, 82, 29},
         {50256, 17250, 27, 82, 12240, 82, 29},
         {27, 171, 121, 250, 27471, 5008, 223, 1659, 5008, 223, 34086, 594, 171, 121, 250, 29, 87, 1279, 91, 12982, 91, 29, 331},
         {27, 171, 121, 250, 27471, 5008, 223, 1659, 5008, 223, 34086, 594, 171, 121, 250, 29, 87, 1279, 91, 12982, 91, 29, 331},
         {82, 24172, 1706, 6184, 116, 75, 685, 47, 2885, 1120, 27019, 60, 1279, 91, 36, 2394, 91, 29},
         {64, 3556, 82, 29, 275, 3556, 82, 29, 220, 269},
     }},
    {"falcon",
     {
         {1595, 2129, 15627, 23, 204, 832, 258, 5954, 25},
         {3071, 261, 19, 99, 2045, 742, 565, 1859, 37, 854, 1161, 204, 28, 742, 1161, 204, 27, 193},
         {42920, 2510, 1897, 37, 14474, 23, 55504, 27949, 214, 204, 30, 25, 1279, 23, 301, 373, 357, 6719, 204, 791, 59251, 23056},
         {204, 847, 3736, 23, 847, 35668, 258},
         {76, 2442, 20731, 262},
         {39, 103, 415, 1487, 2164, 54146, 5516, 39, 94, 7378, 94, 41},
         {11, 5516, 39, 94, 7378, 94, 41},
         {39, 181, 133, 234, 12520, 13856, 207, 1487, 13856, 207, 19638, 608, 181, 133, 234, 41, 99, 204, 39, 103, 7932, 54146, 291},
         {39, 181, 133, 234, 12520, 13856, 207, 1487, 13856, 207, 19638, 608, 181, 133, 234, 41, 99, 204, 39, 103, 7932, 54146, 291},
         {94, 34881, 2467, 767, 128, 87, 204, 70, 59, 2944, 33745, 5472, 72, 204, 39, 103, 48, 2741, 54146},
         {76, 1686, 94, 41, 262, 1686, 94, 41, 204, 253},
     }},
    {"starcoder",
     {
         {1349, 14240, 28796, 651, 49, 244, 1636, 280, 17877, 51},
         {610, 315, 45, 125, 731, 303, 434, 837, 63, 310, 461, 244, 54, 303, 461, 244, 53, 222},
         {6089, 48874, 8161, 63, 15531, 102, 49, 40556, 21453, 254, 244, 56, 51, 54, 57, 49, 413, 297, 13235, 32685, 133, 12034, 5524, 43727, 606, 300, 1566, 1329},
         {244, 3161, 16021, 49, 3161, 19942, 280},
         {102, 12994, 342},
         {65, 129, 15546, 31124, 28339, 12589, 65, 120, 873, 120, 67},
         {0, 12589, 65, 120, 873, 120, 67},
         {65, 23865, 274, 2425, 4620, 247, 1048, 4620, 247, 18318, 23865, 274, 67, 125, 39647, 1259, 28339, 553},
         {65, 23865, 274, 2425, 4620, 247, 1048, 4620, 247, 18318, 23865, 274, 67, 125, 39647, 1259, 28339, 553},
         {120, 13401, 6449, 3457, 154, 113, 447, 21247, 58, 53, 55, 60, 60, 98, 39647, 44090, 28339},
         {102, 396, 120, 67, 342, 396, 120, 67, 244, 300},
     }},
    {"refact",
     {
         {1331, 14236, 28805, 631, 30, 225, 1615, 261, 17896, 32},
         {589, 296, 26, 106, 711, 284, 415, 816, 44, 291, 442, 225, 35, 284, 442, 225, 34, 203},
         {6082, 48936, 8139, 44, 15538, 83, 30, 38945, 21426, 235, 225, 37, 32, 35, 38, 30, 394, 278, 13205, 32726, 114, 12011, 5499, 43738, 587, 281, 1549, 1309},
         {225, 3134, 15996, 30, 3134, 19938, 261},
         {83, 12992, 323},
         {46, 110, 15498, 31169, 28318, 12575, 46, 101, 855, 101, 48},
         {0, 12575, 46, 101, 855, 101, 48},
         {46, 23873, 255, 2409, 4606, 228, 1028, 4606, 228, 18107, 23873, 255, 48, 106, 39692, 1240, 28318, 533},
         {46, 23873, 255, 2409, 4606, 228, 1028, 4606, 228, 18107, 23873, 255, 48, 106, 39692, 1240, 28318, 533},
         {101, 13398, 6437, 3441, 135, 94, 428, 21257, 39, 34, 36, 41, 41, 79, 39692, 44132, 28318},
         {83, 377, 101, 48, 323, 377, 101, 48, 225, 281},
     }},
    {"baichuan",
     {
         {1057, 2696, 23115, 31125, 31106, 1363, 31106, 31106, 8502, 79},
         {1410, 668, 31146, 31141, 2942, 5, 31106, 31106, 31106, 1087, 2759, 31143, 5, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 1711, 31106, 53, 5, 31106, 31106, 31106, 1711, 31106, 52, 5},
         {30945, 6616, 31143, 31106, 32560, 31109, 31125, 31106, 34403, 31106, 35653, 31106, 55, 79, 53, 56, 31125, 701, 30762, 619, 525, 555, 1430, 7859, 33752, 707, 17075, 31418},
         {31106, 31106, 1132, 3173, 31125, 1132, 1230, 4931, 31106, 31106},
         {650, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 31106, 675},
         {1557, 31282, 823, 1936, 3856, 31282, 31219, 16054, 31260, 31114, 10436, 31114, 31219},
         {1557, 31282, 823, 1936, 3856, 31282, 31219, 16054, 1, 2},
         {1557, 632, 582, 549, 20165, 679, 10583, 632, 582, 549, 31219, 31141, 1557, 31282, 11361, 31282, 31219, 721},
         {1557, 632, 582, 549, 20165, 679, 10583, 632, 582, 549, 31219, 31141, 1557, 31282, 11361, 31282, 31219, 721},
         {657, 33399, 2300, 31106, 33399, 31115, 1633, 31138, 3399, 57, 52, 54, 59, 59, 31295, 1557, 31282, 3123, 31130, 31282, 31219},
         {650, 2154, 31114, 31219, 675, 2154, 31114, 31219, 31106, 665},
     }},
};

TEST_CASE("ids equal llama.cpp's: user-defined tokens always cut out, control tokens with parse_special") {
    for (const auto& [vocab, all_ids] : kRefIds) {
        const Tokenizer tok = load(vocab_path(vocab));
        REQUIRE(all_ids.size() == std::size(kRefTexts));
        for (size_t i = 0; i < all_ids.size(); ++i) {
            const std::string text = kRefTexts[i].text;
            INFO(std::string(vocab) << " text #" << i << " (parse_special " << kRefTexts[i].parse_special << "): '" << text << "'");
            CHECK(tok.encode(text, false, kRefTexts[i].parse_special) == all_ids[i]);
            // (llama decodes a U+2581 of the text as a space: the round trip is checked for gpt2)
            if (!kRefTexts[i].parse_special && tok.kind() == TokenizerKind::Bpe) CHECK(tok.decode(all_ids[i]) == text);
        }
    }
}

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
    // With user-defined tokens (gpt-neox, mpt: runs of spaces; deepseek: 'ø' ... and, for the
    // coder, "<|EOT|>"), also with control tokens cut out (parse_special).
    texts.push_back("a  b   c    d" + std::string(30, ' ') + "e\n    f\n        g");
    texts.push_back("<|endoftext|>x<|padding|>  [PAD50300]<|EOT|>\xC3\xB8<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>");
    for (const char* v : {"deepseek-llm", "deepseek-coder", "falcon", "starcoder", "mpt", "gpt-neox"}) {
        const GgufFile f = GgufFile::open(vocab_path(v));
        const Tokenizer tok = Tokenizer::from_gguf(f, [](const std::string&) {});
        PreType pre = PreType::Default;  // gpt-neox's file has no tokenizer.ggml.pre
        if (f.find("tokenizer.ggml.pre")) REQUIRE(pre_type_from_name(f.get_string("tokenizer.ggml.pre"), pre));
        const tandem_ref::RefBpe ref = tandem_ref::load_ref_bpe(f, pre);
        for (const std::string& t : texts) {
            for (bool special : {false, true}) {
                INFO(v << " (parse_special " << special << "): '" << t << "'");
                const std::vector<TokenId> got = tok.encode(t, false, special);
                CHECK(std::vector<int>(got.begin(), got.end()) == ref.encode(t, special));
            }
        }
    }
}
