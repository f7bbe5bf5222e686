// `tandem tokenize -m MODEL (-p TEXT | -f FILE) [--ids] [--bos] [--parse-special]`: the tokens
// of a text.
//
// The whole text (a file as is, trailing newline included) is tokenized as one string: the
// vocabulary's user-defined tokens are always cut out first, control tokens such as "<s>" only
// with --parse-special (tandem/tokenizer.h); BOS is added only with --bos. Output: with --ids one line of
// space-separated ids; otherwise one line per token, "ID<TAB>'PIECE'", where PIECE is the
// text the token decodes to with \n \r \t \\ \' and bytes that are not printable UTF-8 escaped.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "commands.h"
#include "tandem/gguf.h"
#include "tandem/tokenizer.h"

namespace tandem::cli {

static std::string read_whole_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + path);
    std::ostringstream ss;
    ss << f.rdbuf();
    if (f.bad()) throw std::runtime_error("cannot read " + path);
    return ss.str();
}

// Escapes control characters and bytes that do not start a valid UTF-8 sequence.
static std::string escape_piece(const std::string& s) {
    std::string out;
    char buf[8];
    for (size_t i = 0; i < s.size();) {
        const unsigned char c = (unsigned char)s[i];
        if (c == '\n') out += "\\n";
        else if (c == '\r') out += "\\r";
        else if (c == '\t') out += "\\t";
        else if (c == '\\') out += "\\\\";
        else if (c == '\'') out += "\\'";
        else if (c < 0x20 || c == 0x7F) {
            std::snprintf(buf, sizeof buf, "\\x%02X", c);
            out += buf;
        } else if (c < 0x80) {
            out += (char)c;
        } else {
            // Length of a valid multi-byte sequence at i, or 0.
            size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
            if (n && i + n <= s.size()) {
                for (size_t k = 1; k < n; ++k)
                    if (((unsigned char)s[i + k] & 0xC0) != 0x80) n = 0;
            } else {
                n = 0;
            }
            if (n) {
                out.append(s, i, n);
                i += n;
                continue;
            }
            std::snprintf(buf, sizeof buf, "\\x%02X", c);
            out += buf;
        }
        ++i;
    }
    return out;
}

std::string help_tokenize() {
    return "usage: tandem tokenize -m MODEL (-p TEXT | -f FILE) [options]\n"
           "Prints the tokens of the text: one line per token, ID<TAB>'PIECE' (\\n \\t \\' and bytes that are\n"
           "not printable UTF-8 escaped), or with --ids one line of ids.\n\n"
           "  -m, --model PATH     GGUF model or vocabulary (required)\n"
           "  -p, --prompt TEXT    the text (this or -f)\n"
           "  -f, --file PATH      the text, read as is\n"
           "      --ids            one line of space-separated ids (default: one line per token)\n"
           "      --bos            put the BOS token first (default: off)\n"
           "      --parse-special  text such as <s> becomes the control token (default: off; user-defined\n"
           "                       tokens are always cut out)\n"
           "  -h, --help           this text\n";
}

int cmd_tokenize(const Args& args) {
    std::string model, text, file;
    bool have_text = false, ids_only = false, bos = false, parse_special = false;
    for (size_t i = 0; i < args.size(); i++) {
        const std::string& a = args[i];
        if (a == "-m" || a == "--model") model = flag_value(args, i);
        else if (a == "-p" || a == "--prompt") {
            text = flag_value(args, i);
            have_text = true;
        } else if (a == "-f" || a == "--file") file = flag_value(args, i);
        else if (a == "--ids") ids_only = true;
        else if (a == "--bos") bos = true;
        else if (a == "--parse-special") parse_special = true;
        else unknown_argument(a);
    }
    if (model.empty()) throw UsageError{"-m MODEL is required"};
    if (have_text == !file.empty()) throw UsageError{"give exactly one of -p TEXT or -f FILE"};
    if (!file.empty()) text = read_whole_file(file);

    const GgufFile f = GgufFile::open(model);
    const Tokenizer tok = Tokenizer::from_gguf(f);
    if (bos && tok.bos() < 0) std::fprintf(stderr, "tandem tokenize: warning: %s has no BOS token\n", model.c_str());
    const std::vector<TokenId> ids = tok.encode(text, bos, parse_special);

    std::string out;
    if (ids_only) {
        for (size_t i = 0; i < ids.size(); i++) out += (i ? " " : "") + std::to_string(ids[i]);
        out += '\n';
    } else {
        for (TokenId id : ids) {
            const bool special = tok.token_type(id) == TokenType::Control;
            const std::string& piece = special ? tok.token_text(id) : tok.token_bytes(id);
            out += std::to_string(id) + "\t'" + escape_piece(piece) + "'\n";
        }
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    return std::fflush(stdout) == 0 ? 0 : 1;
}

}  // namespace tandem::cli
