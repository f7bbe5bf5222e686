// `tandem`: the command-line face of the SDK. The table below is the list of subcommands.
//
// Conventions (the ones llama.cpp users bring): `tandem --version`; `tandem CMD --help` prints
// what CMD does and every option with its default to stdout and exits 0; a bad command line
// exits 2 with the usage on stderr; errors exit 1. Results go to stdout, diagnostics and
// statistics to stderr, each on a line of its own.
#include <cstdio>
#include <cstring>
#include <string>
#include <exception>

#include "commands.h"
#include "tandem/mapping_faults.h"

#ifndef TANDEM_VERSION
#error "TANDEM_VERSION (the project version) is set by examples/cli/CMakeLists.txt"
#endif

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

void unknown_argument(const std::string& arg) {
    if (arg == "-h" || arg == "--help") throw HelpRequested{};
    throw UsageError{"unknown option " + arg};
}

std::string backend_for_gpu_layers(int n_gpu_layers) { return n_gpu_layers == 0 ? "cpu" : "auto"; }

void warn_gpu_not_used(const std::string& why) { std::fprintf(stderr, "tandem: WARNING: %s\n", why.c_str()); }

struct Command {
    const char* name;
    int (*run)(const Args&);
    const char* usage;
    std::string (*help)();
};

static const Command kCommands[] = {
    {"info", cmd_info, "tandem info MODEL [--json]", help_info},
    {"tokenize", cmd_tokenize, "tandem tokenize -m MODEL (-p TEXT | -f FILE) [--ids] [--bos] [--parse-special]", help_tokenize},
    {"run", cmd_run,
     "tandem run -m MODEL -p PROMPT [-n N] [-c N] [-t N] [-ngl N] [--temp T] [--top-k K] [--top-p P] [--min-p P]"
     " [--repeat-penalty R] [-s SEED] [--stop S] [--backend cpu|cuda|auto] [--kv f16|turbo]",
     help_run},
    {"perplexity", cmd_perplexity,
     "tandem perplexity -m MODEL -f FILE [-c N] [-t N] [-ngl N] [--max-chunks N] [--kv f16|f32|turbo] [--turbo-2bit FRAC]"
     " [--kernels PATH]"
     " [--backend cpu|cuda|auto]",
     help_perplexity},
    {"bench", cmd_bench, "tandem bench -m MODEL [--json] [-t N] [-p N] [-n N] [-r N] [--kv f16|turbo] [--kernels PATH] [--cpu-time]", help_bench},
    {"router", cmd_router, "tandem router (train|calibrate|eval|decide|synth) ...   (tandem router --help)", help_router},
    {"calibrate-heads", cmd_calibrate_heads, "tandem calibrate-heads MODEL --text FILE [--frac-2bit F] [--out PATH]",
     help_calibrate_heads},
    {"sync", cmd_sync, "tandem sync --db PATH --url URL [--token T] [--once] [--wait S] [--max-items N] [--insecure] [--verbose]", help_sync},
    {"pull", cmd_pull, "tandem pull URL --sha256 HEX [--out PATH] [--max-bytes N] [--retries N] [--insecure] [--quiet]", help_pull},
};

static void print_usage(FILE* out) {
    std::fprintf(out, "tandem %s: local writing assistance from GGUF models\n\nusage:\n", TANDEM_VERSION);
    for (const Command& c : kCommands) std::fprintf(out, "  %s\n", c.usage);
    std::fprintf(out, "  tandem --version\n\n`tandem COMMAND --help` lists a command's options and their defaults.\n");
}

}  // namespace tandem::cli

int main(int argc, char** argv) {
    using namespace tandem::cli;
    tandem::report_mapping_faults();  // a model file truncated while mapped: an error, not a silent SIGBUS
    if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
        print_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!std::strcmp(argv[1], "--version")) {
        std::printf("tandem %s\n", TANDEM_VERSION);
        return 0;
    }
    for (const Command& c : kCommands) {
        if (std::strcmp(argv[1], c.name) != 0) continue;
        Args args(argv + 2, argv + argc);
        try {
            return c.run(args);
        } catch (const HelpRequested&) {
            std::fputs(c.help().c_str(), stdout);
            return std::fflush(stdout) == 0 ? 0 : 1;
        } catch (const UsageError& e) {
            std::fprintf(stderr, "tandem %s: %s\nusage: %s\n(tandem %s --help lists the options)\n", c.name,
                         e.message.c_str(), c.usage, c.name);
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
