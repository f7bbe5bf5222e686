// `tandem`: the command-line face of the SDK. The table below is the list of subcommands.
#include <cstdio>
#include <cstring>
#include <string>
#include <exception>

#include "commands.h"

namespace tandem::cli {

const std::string& flag_value(const Args& args, size_t& i) {
    if (i + 1 >= args.size()) throw UsageError{"option " + args[i] + " needs a value"};
    return args[++i];
}

int parse_int(const std::string& s, const std::string& option) {
    size_t used = 0;
    int v = 0;
    try { v = std::stoi(s, &used); } catch (const std::exception&) { used = 0; }
    if (used != s.size() || s.empty()) throw UsageError{"option " + option + " needs an integer, got '" + s + "'"};
    return v;
}

double parse_double(const std::string& s, const std::string& option) {
    size_t used = 0;
    double v = 0;
    try { v = std::stod(s, &used); } catch (const std::exception&) { used = 0; }
    if (used != s.size() || s.empty()) throw UsageError{"option " + option + " needs a number, got '" + s + "'"};
    return v;
}

struct Command {
    const char* name;
    int (*run)(const Args&);
    const char* usage;
};

static const Command kCommands[] = {
    {"info", cmd_info, "tandem info MODEL [--json]"},
    {"tokenize", cmd_tokenize, "tandem tokenize -m MODEL (-p TEXT | -f FILE) [--ids] [--bos]"},
    {"run", cmd_run,
     "tandem run -m MODEL -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R]"
     " [--seed S] [--threads T] [--ctx C] [--stop S] [--backend cpu|cuda|auto] [--kv f16|turbo]"},
    {"perplexity", cmd_perplexity, "tandem perplexity -m MODEL -f FILE [--ctx C] [--threads T] [--max-chunks N] [--kv f16|f32|turbo] [--turbo-2bit FRAC] [--backend cpu|cuda|auto]"},
    {"bench", cmd_bench, "tandem bench -m MODEL [--json] [--threads T] [--prompt-tokens N] [--decode-tokens N] [--runs R] [--kv f16|turbo] [--kernels PATH] [--cpu-time]"},
    {"router", cmd_router, "tandem router (train|calibrate|eval|decide|synth) ...   (tandem router --help)"},
    {"calibrate-heads", cmd_calibrate_heads, "tandem calibrate-heads MODEL --text FILE [--frac-2bit F] [--out PATH]"},
    {"sync", cmd_sync, "tandem sync --db PATH --url URL [--token T] [--once] [--wait S] [--max-items N] [--insecure] [--verbose]"},
    {"pull", cmd_pull, "tandem pull URL --sha256 HEX [--out PATH] [--retries N] [--insecure] [--quiet]"},
};

static void print_usage(FILE* out) {
    std::fprintf(out, "usage:\n");
    for (const Command& c : kCommands) std::fprintf(out, "  %s\n", c.usage);
}

}  // namespace tandem::cli

int main(int argc, char** argv) {
    using namespace tandem::cli;
    if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
        print_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (const Command& c : kCommands) {
        if (std::strcmp(argv[1], c.name) != 0) continue;
        Args args(argv + 2, argv + argc);
        try {
            return c.run(args);
        } catch (const UsageError& e) {
            std::fprintf(stderr, "tandem %s: %s\nusage: %s\n", c.name, e.message.c_str(), c.usage);
            return 2;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "tandem %s: error: %s\n", c.name, e.what());
            return 1;
        }
    }
    std::fprintf(stderr, "tandem: unknown command '%s'\n", argv[1]);
    print_usage(stderr);
    return 2;
}
