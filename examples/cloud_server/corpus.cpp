// Corpus loading: directories of .txt/.md files and UNGD .jsonl / .jsonl.xz speech files.
#include "tandem/cloud/corpus.h"

#include <lzma.h>
#include <sys/stat.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tandem/json_int.h"

namespace tandem::cloud {

namespace fs = std::filesystem;

// ---- sentences and passages ------------------------------------------------------------

static bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

static std::string trim(std::string_view s) {
    size_t a = 0, b = s.size();
    while (a < b && std::isspace((unsigned char)s[a])) a++;
    while (b > a && std::isspace((unsigned char)s[b - 1])) b--;
    return std::string(s.substr(a, b - a));
}

// True when the word ending at text[end) (before a '.') is an abbreviation.
static bool is_abbreviation(std::string_view text, size_t end) {
    static const char* const kAbbr[] = {"Mr", "Mrs", "Ms", "Dr", "St", "No", "Sr", "Jr", "vs", "Mt", "etc"};
    size_t start = end;
    while (start > 0 && std::isalpha((unsigned char)text[start - 1])) start--;
    std::string_view w = text.substr(start, end - start);
    if (w.size() == 1 && std::isupper((unsigned char)w[0])) return true;  // initials: "J. Smith"
    for (const char* a : kAbbr)
        if (w == a) return true;
    return false;
}

std::vector<std::string> split_sentences(std::string_view text) {
    std::vector<std::string> out;
    size_t start = 0;
    auto emit = [&](size_t end) {
        std::string s = trim(text.substr(start, end - start));
        if (!s.empty()) out.push_back(std::move(s));
        start = end;
    };
    for (size_t i = 0; i < text.size(); i++) {
        char c = text[i];
        if (c == '\n') {
            emit(i + 1);
        } else if ((c == '.' || c == '!' || c == '?') && i + 1 < text.size() &&
                   std::isspace((unsigned char)text[i + 1]) && !(c == '.' && is_abbreviation(text, i))) {
            emit(i + 1);
        }
    }
    emit(text.size());
    return out;
}

std::vector<std::string> split_passages(std::string_view text, size_t target_chars) {
    std::vector<std::string> out;
    std::string cur;
    // Paragraphs (lines) first, sentences inside long ones.
    size_t pos = 0;
    while (pos <= text.size()) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string_view::npos) nl = text.size();
        for (const std::string& s : split_sentences(text.substr(pos, nl - pos))) {
            if (!cur.empty() && cur.size() + 1 + s.size() > target_chars) {
                out.push_back(std::move(cur));
                cur.clear();
            }
            if (!cur.empty()) cur += '\n';  // keeps sentence boundaries for the generator
            cur += s;
        }
        if (cur.size() >= target_chars / 2) {  // a paragraph end is a good place to cut
            out.push_back(std::move(cur));
            cur.clear();
        }
        pos = nl + 1;
    }
    if (!cur.empty()) out.push_back(std::move(cur));
    return out;
}

// ---- readers ---------------------------------------------------------------------------

static std::string read_all(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw CorpusError("corpus " + path + ": cannot open");
    std::stringstream ss;
    ss << f.rdbuf();
    if (f.bad()) throw CorpusError("corpus " + path + ": read error");
    return ss.str();
}

// Decompresses an .xz file, calling on_line for each '\n'-terminated line.
static void read_xz_lines(const std::string& path, const std::function<void(std::string&)>& on_line) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw CorpusError("corpus " + path + ": cannot open");
    lzma_stream strm = LZMA_STREAM_INIT;
    if (lzma_stream_decoder(&strm, UINT64_MAX, LZMA_CONCATENATED) != LZMA_OK) {
        std::fclose(f);
        throw CorpusError("corpus " + path + ": cannot start the xz decoder");
    }
    std::vector<uint8_t> in(1 << 16), outbuf(1 << 18);
    std::string line;
    lzma_action action = LZMA_RUN;
    lzma_ret ret = LZMA_OK;
    strm.next_out = outbuf.data();
    strm.avail_out = outbuf.size();
    try {
        for (;;) {
            if (strm.avail_in == 0 && action == LZMA_RUN) {
                strm.next_in = in.data();
                strm.avail_in = std::fread(in.data(), 1, in.size(), f);
                if (std::ferror(f)) throw CorpusError("corpus " + path + ": read error");
                if (std::feof(f)) action = LZMA_FINISH;
            }
            ret = lzma_code(&strm, action);
            size_t produced = outbuf.size() - strm.avail_out;
            for (size_t i = 0; i < produced; i++) {
                char c = (char)outbuf[i];
                if (c == '\n') {
                    on_line(line);
                    line.clear();
                } else {
                    line += c;
                }
            }
            strm.next_out = outbuf.data();
            strm.avail_out = outbuf.size();
            if (ret == LZMA_STREAM_END) break;
            if (ret != LZMA_OK)
                throw CorpusError("corpus " + path + ": xz decoding failed (lzma error " + std::to_string((int)ret) + ")");
        }
        if (!line.empty()) on_line(line);
    } catch (...) {
        lzma_end(&strm);
        std::fclose(f);
        throw;
    }
    lzma_end(&strm);
    std::fclose(f);
}

// Parses one line into *out; false when the line is blank or outside [min_year, max_year].
static bool parse_ungd_line(const std::string& path, size_t line_no, const std::string& line, int min_year,
                            int max_year, UngdSpeech* out) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) return false;
    {
        // Skip other years without parsing 20 KB of JSON each: read "year" directly.
        size_t k = line.find("\"year\":");
        if (k != std::string::npos) {
            const long y = std::strtol(line.c_str() + k + 7, nullptr, 10);
            if ((max_year > 0 && y > max_year) || (min_year > 0 && y < min_year)) return false;
        }
    }
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    std::string where = "corpus " + path + ": line " + std::to_string(line_no) + ": ";
    if (j.is_discarded() || !j.is_object()) throw CorpusError(where + "not a JSON object");
    for (const char* k : {"id", "country", "text"})
        if (!j.contains(k) || !j[k].is_string()) throw CorpusError(where + "missing string field '" + k + "'");
    for (const char* k : {"year", "session"}) {
        if (!j.contains(k) || !j[k].is_number_integer()) throw CorpusError(where + "missing integer field '" + k + "'");
        if (!json_int_in(j[k], INT_MIN, INT_MAX))
            throw CorpusError(where + "field '" + k + "' is out of range (" + j[k].dump() + ")");
    }
    out->year = j["year"].get<int>();
    if ((max_year > 0 && out->year > max_year) || (min_year > 0 && out->year < min_year)) return false;
    out->id = j["id"].get<std::string>();
    out->country = j["country"].get<std::string>();
    out->session = j["session"].get<int>();
    out->text = j["text"].get<std::string>();
    return true;
}

void for_each_ungd_speech(const std::string& path, int min_year, int max_year,
                          const std::function<void(UngdSpeech&&)>& on_speech) {
    size_t line_no = 0;
    auto on_line = [&](std::string& line) {
        UngdSpeech s;
        if (parse_ungd_line(path, ++line_no, line, min_year, max_year, &s)) on_speech(std::move(s));
    };
    if (ends_with(path, ".xz")) {
        read_xz_lines(path, on_line);
        return;
    }
    std::ifstream f(path);
    if (!f) throw CorpusError("corpus " + path + ": cannot open");
    std::string line;
    while (std::getline(f, line)) on_line(line);
}

static void load_jsonl(const std::string& path, int max_year, std::vector<CorpusDoc>& docs) {
    for_each_ungd_speech(path, 0, max_year, [&](UngdSpeech&& s) {
        CorpusDoc d;
        d.doc_id = std::move(s.id);
        d.title = s.country + " " + std::to_string(s.year) + " (UNGA " + std::to_string(s.session) + ")";
        d.passages = split_passages(s.text);
        if (!d.passages.empty()) docs.push_back(std::move(d));
    });
}

static bool is_text_file(const fs::path& p) { return p.extension() == ".txt" || p.extension() == ".md"; }

static void load_text_file(const fs::path& p, std::vector<CorpusDoc>& docs) {
    CorpusDoc d;
    d.doc_id = p.filename().string();
    d.title = p.stem().string();
    d.passages = split_passages(read_all(p.string()));
    if (!d.passages.empty()) docs.push_back(std::move(d));
}

static std::vector<fs::path> corpus_files(const std::string& path) {
    std::error_code ec;
    fs::file_status st = fs::status(path, ec);
    if (ec || !fs::exists(st)) throw CorpusError("corpus " + path + ": no such file or directory");
    std::vector<fs::path> files;
    if (fs::is_directory(st)) {
        for (const auto& e : fs::directory_iterator(path, ec))
            if (e.is_regular_file() && is_text_file(e.path())) files.push_back(e.path());
        if (ec) throw CorpusError("corpus " + path + ": " + ec.message());
        std::sort(files.begin(), files.end());
        if (files.empty()) throw CorpusError("corpus " + path + ": no .txt or .md files in the directory");
    } else {
        files.push_back(path);
    }
    return files;
}

std::vector<CorpusDoc> load_corpus(const std::string& path, int max_year) {
    std::vector<CorpusDoc> docs;
    for (const fs::path& p : corpus_files(path)) {
        std::string s = p.string();
        if (ends_with(s, ".jsonl") || ends_with(s, ".jsonl.xz")) load_jsonl(s, max_year, docs);
        else if (is_text_file(p)) load_text_file(p, docs);
        else throw CorpusError("corpus " + s + ": unknown kind of file (want a directory, .txt, .md, .jsonl or .jsonl.xz)");
    }
    if (docs.empty()) throw CorpusError("corpus " + path + ": no documents with text" +
                                        (max_year > 0 ? " up to year " + std::to_string(max_year) : ""));
    return docs;
}

std::string corpus_signature(const std::string& path, int max_year) {
    std::string sig = "v1|" + fs::absolute(path).string() + "|max_year=" + std::to_string(max_year);
    for (const fs::path& p : corpus_files(path)) {
        struct stat st {};
        if (::stat(p.c_str(), &st) != 0) throw CorpusError("corpus " + p.string() + ": cannot stat");
        sig += "|" + p.filename().string() + ":" + std::to_string((long long)st.st_size) + ":" +
               std::to_string((long long)st.st_mtim.tv_sec) + "." + std::to_string((long long)st.st_mtim.tv_nsec);
    }
    return sig;
}

}  // namespace tandem::cloud
