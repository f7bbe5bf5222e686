// Subcommands of the `tandem` tool. Each takes the arguments after its name and returns the
// process exit code; errors go to stderr, results to stdout.
#pragma once
#include <string>
#include <vector>

namespace tandem::cli {

using Args = std::vector<std::string>;

int cmd_info(const Args& args);
int cmd_tokenize(const Args& args);
int cmd_run(const Args& args);
int cmd_perplexity(const Args& args);
int cmd_bench(const Args& args);
int cmd_router(const Args& args);
int cmd_sync(const Args& args);
int cmd_calibrate_heads(const Args& args);
int cmd_pull(const Args& args);

// Each subcommand's --help text: what it does and every option with its default. Printed to
// stdout by `tandem CMD --help` (exit 0).
std::string help_info();
std::string help_tokenize();
std::string help_run();
std::string help_perplexity();
std::string help_bench();
std::string help_router();
std::string help_sync();
std::string help_calibrate_heads();
std::string help_pull();

// Thrown for bad command lines; main prints it with the usage line of the subcommand (exit 2).
struct UsageError {
    std::string message;
};

// Thrown for -h/--help; main prints the subcommand's help (exit 0).
struct HelpRequested {};

// For an argument the subcommand does not take: throws HelpRequested for -h/--help, else
// UsageError ("unknown option X").
[[noreturn]] void unknown_argument(const std::string& arg);

// -ngl/--n-gpu-layers N as llama.cpp users type it: 0 -> "cpu"; any other value -> "auto" (the
// GPU when there is one, for every layer: Tandem does not split a model between devices).
std::string backend_for_gpu_layers(int n_gpu_layers);

// Tells on stderr, in capitals, that the GPU asked for (-ngl, --backend auto) is not used.
void warn_gpu_not_used(const std::string& why);

// Returns the value after `flag` at args[i] (advancing i), or throws UsageError.
const std::string& flag_value(const Args& args, size_t& i);
// Parse a whole-string number or throw UsageError naming the option.
int parse_int(const std::string& s, const std::string& option);
double parse_double(const std::string& s, const std::string& option);

}  // namespace tandem::cli
