// `tandem tokenize -m MODEL (-p TEXT | -f FILE) [--ids] [--bos]`: the whole text as one
// string, no special-token parsing, BOS only with --bos. --ids: ids on one line; otherwise
// one "id<TAB>piece" line per token (the piece as the vocabulary stores it).
#include <cstdio>
#include <fstream>
#include <sstream>

#include "commands.h"
#include "tandem/gguf.h"
#include "tandem/tokenizer.h"

namespace tandem::cli {

int cmd_tokenize(const Args& args) {
    std::string model, text, file;
    bool ids_only = false, bos = false, have_text = false;
    for (size_t i = 0; i < args.size(); i++) {
        const std::string& a = args[i];
        if (a == "-m" || a == "--model") model = flag_value(args, i);
        else if (a == "-p" || a == "--prompt") { text = flag_value(args, i); have_text = true; }
        else if (a == "-f" || a == "--file") file = flag_value(args, i);
        else if (a == "--ids") ids_only = true;
        else if (a == "--bos") bos = true;
        else throw UsageError{"unknown option " + a};
    }
    if (model.empty()) throw UsageError{"-m MODEL is required"};
    if (have_text == !file.empty()) throw UsageError{"give exactly one of -p TEXT or -f FILE"};
    if (!file.empty()) {
        std::ifstream in(file, std::ios::binary);
        if (!in) throw std::runtime_error(file + ": cannot open");
        std::stringstream ss;
        ss << in.rdbuf();
        text = ss.str();
    }
    const GgufFile f = GgufFile::open(model);
    const Tokenizer tok = Tokenizer::from_gguf(f);
    const std::vector<TokenId> ids = tok.encode(text, bos);
    if (ids_only) {
        for (size_t i = 0; i < ids.size(); i++) std::printf(i ? " %d" : "%d", ids[i]);
        std::printf("\n");
    } else {
        for (TokenId id : ids) std::printf("%d\t%s\n", id, tok.token_text(id).c_str());
    }
    return 0;
}

}  // namespace tandem::cli
