// demo-pair-prepare: the demo client's training data (bench/demo_pair/README.md), on the CPU.
//
// Speeches of years <= --max-year become the train split, those of --val-year the validation
// split. Each speech is cut into windows that start at a sentence (training_windows.h), encoded
// with the demo client's own tokenizer (the 8,192-token BPE of --model). Each window gets up to
// 4 notes: sentences of *other* speeches of its year that best match its opening (BM25,
// note_retrieval.h), kept as suggest() would keep them (<= 4 notes, <= 192 tokens).
//
// Output, DIR/{train,val}/ (little-endian arrays, no header):
//
//   file                 type  count            what
//   window_tokens.bin    u16   sum of lengths   every window's tokens, concatenated
//   window_offsets.bin   u32   n_windows + 1    window i = window_tokens[off[i], off[i+1])
//   window_notes.bin     u32   n_windows + 1    window i's notes = notes [wn[i], wn[i+1]), best first
//   window_speech.bin    u32   n_windows        the speech (index within the split) of each window
//   note_tokens.bin      u16   sum of lengths   every note's tokens (the note encoded alone)
//   note_offsets.bin     u32   n_notes + 1      note j = note_tokens[off[j], off[j+1])
//
// and DIR/meta.json: bos, newline and blank_line tokens (join_notes' separators), counts,
// settings, and a decoded example. train.py reads exactly this.
//
// usage: demo-pair-prepare --out DIR [--shared DIR] [--model GGUF] [--max-year Y] [--val-year Y]
//                          [--per-year N]
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tandem/cloud/corpus.h"  // examples/cloud_server: split_sentences
#include "drafts.h"
#include "note_retrieval.h"
#include "tandem/gguf.h"
#include "tandem/tokenizer.h"
#include "training_windows.h"

using namespace tandem;
using namespace tandem::demo;

namespace {

struct Settings {
    std::string shared = TANDEM_SHARED_DIR, out, model;
    int max_year = 2005, val_year = 2006;
    int per_year = 0;                 // > 0: at most this many speeches a year (a quick trial)
    size_t window_tokens = 511;       // 512-token context minus BOS
    size_t window_chars = 3200;       // whole sentences encoded per window, then cut to window_tokens
    size_t query_chars = 600;         // the window's opening the notes are retrieved for
    size_t note_min_chars = 30, note_max_chars = 300;
    size_t candidates = 8, per_speech = 2;
    size_t note_items = 4, note_budget = 192;  // AssistantConfig's memory_max_items, memory_budget_tokens
};

// One split's arrays (see the table above).
struct Split {
    std::vector<uint16_t> window_tokens, note_tokens;
    std::vector<uint32_t> window_offsets{0}, window_notes{0}, window_speech, note_offsets{0};
    size_t speeches = 0, windows_with_notes = 0, notes_dropped_by_layout = 0;
    uint64_t note_token_count = 0;
};

template <class T>
void write_array(const std::string& path, const std::vector<T>& v) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(v.data()), (std::streamsize)(v.size() * sizeof(T)));
    if (!f) throw std::runtime_error("cannot write " + path);
}

void append_tokens(std::vector<uint16_t>& dst, const std::vector<int32_t>& src) {
    for (int32_t t : src) {
        if (t < 0 || t > 0xFFFF) throw std::runtime_error("token id " + std::to_string(t) + " does not fit 16 bits");
        dst.push_back((uint16_t)t);
    }
}

// The first max_chars bytes of s, cut back to a space.
std::string opening(const std::string& s, size_t max_chars) {
    if (s.size() <= max_chars) return s;
    const size_t cut = s.rfind(' ', max_chars);
    return s.substr(0, cut == std::string::npos ? max_chars : cut);
}

// text with every white-space run that holds a line break made one space: the speeches of
// 1990-2014 are hard-wrapped at ~50 characters, and the splitter ends a sentence at a line
// break, so notes are cut from the flattened text (windows keep the text as it is).
std::string flatten_lines(const std::string& text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        const unsigned char c = (unsigned char)text[i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            out += text[i++];
            continue;
        }
        size_t j = i;
        bool line_break = false;
        while (j < text.size() && (text[j] == ' ' || text[j] == '\t' || text[j] == '\n' || text[j] == '\r'))
            line_break |= text[j++] == '\n';
        out += line_break ? std::string(" ") : text.substr(i, j - i);
        i = j;
    }
    return out;
}

// Adds the speeches of one year to split: windows, their notes from the year's other speeches.
void add_year(const std::vector<const eval::Speech*>& speeches, const Tokenizer& tok, const Settings& st, Split& sp,
              nlohmann::json* example) {
    SentenceIndex index;
    std::vector<std::vector<eval::SentenceSpan>> spans(speeches.size());
    for (size_t i = 0; i < speeches.size(); i++) {
        spans[i] = eval::sentence_spans(speeches[i]->text);
        index.add_speech((int)i, cloud::split_sentences(flatten_lines(speeches[i]->text)), st.note_min_chars,
                         st.note_max_chars);
    }
    for (size_t i = 0; i < speeches.size(); i++) {
        const std::string& text = speeches[i]->text;
        for (const TextWindow& w : cut_windows(text, spans[i], tok, st.window_tokens, st.window_chars)) {
            append_tokens(sp.window_tokens, w.tokens);
            sp.window_offsets.push_back((uint32_t)sp.window_tokens.size());
            sp.window_speech.push_back((uint32_t)(sp.speeches + i));
            std::vector<std::string> cands;
            for (size_t s : index.search(opening(flatten_lines(text.substr(w.begin, w.end - w.begin)), st.query_chars), st.candidates,
                                         (int)i, st.per_speech))
                cands.push_back(index.text(s));
            std::vector<std::string> notes = select_notes(tok, cands, st.note_items, st.note_budget);
            const size_t exact = notes_layout_exact(tok, notes);
            sp.notes_dropped_by_layout += notes.size() - exact;
            notes.resize(exact);
            for (const std::string& n : notes) {
                const std::vector<int32_t> t = tok.encode(n, false);
                sp.note_token_count += t.size();
                append_tokens(sp.note_tokens, t);
                sp.note_offsets.push_back((uint32_t)sp.note_tokens.size());
            }
            sp.window_notes.push_back((uint32_t)(sp.note_offsets.size() - 1));
            if (!notes.empty()) sp.windows_with_notes++;
            if (example && example->is_null() && notes.size() >= 2) {
                *example = {{"speech", speeches[i]->id},
                            {"prompt", tok.decode(notes_block_tokens(tok, notes)) +
                                           tok.decode(w.tokens).substr(0, 600) + " ..."}};
            }
        }
    }
    sp.speeches += speeches.size();
}

void write_split(const std::string& dir, const Split& sp) {
    std::filesystem::create_directories(dir);
    write_array(dir + "/window_tokens.bin", sp.window_tokens);
    write_array(dir + "/window_offsets.bin", sp.window_offsets);
    write_array(dir + "/window_notes.bin", sp.window_notes);
    write_array(dir + "/window_speech.bin", sp.window_speech);
    write_array(dir + "/note_tokens.bin", sp.note_tokens);
    write_array(dir + "/note_offsets.bin", sp.note_offsets);
}

nlohmann::json split_summary(const Split& sp) {
    const size_t n = sp.window_offsets.size() - 1, notes = sp.note_offsets.size() - 1;
    return {{"speeches", sp.speeches},
            {"windows", n},
            {"window_tokens", sp.window_tokens.size()},
            {"windows_with_notes", sp.windows_with_notes},
            {"notes", notes},
            {"note_tokens", sp.note_token_count},
            {"notes_per_window", n ? (double)notes / (double)n : 0.0},
            {"notes_dropped_by_layout", sp.notes_dropped_by_layout}};
}

const char* kUsage =
    "usage: demo-pair-prepare --out DIR [--shared DIR] [--model GGUF] [--max-year Y] [--val-year Y] [--per-year N]\n"
    "  --model     the GGUF whose tokenizer is used (default SHARED/models/tandem-demo-client-q8_0.gguf)\n"
    "  --max-year  last training year (default 2005); --val-year: the validation year (default 2006)\n"
    "  --per-year  at most N speeches a year (a quick trial; default all)\n";

Settings parse_args(int argc, char** argv) {
    Settings st;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
            return argv[++i];
        };
        auto number = [&](int lo, int hi) {
            const std::string v = value();
            char* end = nullptr;
            const long x = std::strtol(v.c_str(), &end, 10);
            if (v.empty() || *end || x < lo || x > hi)
                throw std::invalid_argument(a + " wants an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                            "], got '" + v + "'");
            return (int)x;
        };
        if (a == "--out") st.out = value();
        else if (a == "--shared") st.shared = value();
        else if (a == "--model") st.model = value();
        else if (a == "--max-year") st.max_year = number(1900, 9999);
        else if (a == "--val-year") st.val_year = number(1900, 9999);
        else if (a == "--per-year") st.per_year = number(1, 1000000);
        else if (a == "-h" || a == "--help") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        } else throw std::invalid_argument("unknown option '" + a + "'");
    }
    if (st.out.empty()) throw std::invalid_argument("--out is required");
    if (st.val_year <= st.max_year) throw std::invalid_argument("--val-year must be after --max-year");
    if (st.model.empty()) st.model = st.shared + "/models/tandem-demo-client-q8_0.gguf";
    return st;
}

}  // namespace

int main(int argc, char** argv) {
    Settings st;
    try {
        st = parse_args(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "demo-pair-prepare: %s\n%s", e.what(), kUsage);
        return 2;
    }
    try {
        const auto t0 = std::chrono::steady_clock::now();
        const GgufFile gguf = GgufFile::open(st.model);
        const Tokenizer tok = Tokenizer::from_gguf(gguf);
        const std::vector<eval::Speech> speeches = eval::load_speeches(st.shared + "/corpus/ungd.jsonl.xz", 0, st.val_year);
        std::map<int, std::vector<const eval::Speech*>> by_year;
        for (const eval::Speech& s : speeches)
            if (s.year <= st.max_year || s.year == st.val_year) {
                auto& v = by_year[s.year];
                if (st.per_year == 0 || (int)v.size() < st.per_year) v.push_back(&s);
            }
        Split train, val;
        nlohmann::json example;
        for (const auto& [year, list] : by_year) {
            const bool is_val = year == st.val_year;
            add_year(list, tok, st, is_val ? val : train, is_val ? &example : nullptr);
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            std::fprintf(stderr, "%d: %zu speeches, %zu train windows so far, %.0f s\n", year, list.size(),
                         train.window_offsets.size() - 1, s);
        }
        write_split(st.out + "/train", train);
        write_split(st.out + "/val", val);
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const nlohmann::json meta = {
            {"tokenizer_model", st.model},
            {"n_vocab", tok.n_tokens()},
            {"bos", tok.bos()},
            {"newline", tok.encode("\n", false)},
            {"blank_line", tok.encode("\n\n", false)},
            {"train_years", {by_year.begin()->first, st.max_year}},
            {"val_year", st.val_year},
            {"settings",
             {{"window_tokens", st.window_tokens}, {"window_chars", st.window_chars}, {"query_chars", st.query_chars},
              {"note_chars", {st.note_min_chars, st.note_max_chars}}, {"candidates", st.candidates},
              {"per_speech", st.per_speech}, {"note_items", st.note_items}, {"note_budget_tokens", st.note_budget},
              {"per_year", st.per_year}}},
            {"train", split_summary(train)},
            {"val", split_summary(val)},
            {"example", example},
            {"seconds", secs}};
        std::ofstream(st.out + "/meta.json") << meta.dump(2) << "\n";
        std::printf("%s\n", meta.dump(2).c_str());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "demo-pair-prepare: error: %s\n", e.what());
        return 1;
    }
}
