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

// Thrown for bad command lines; main prints it with the usage line of the subcommand.
struct UsageError {
    std::string message;
};

// Returns the value after `flag` at args[i] (advancing i), or throws UsageError.
const std::string& flag_value(const Args& args, size_t& i);
// Parse a whole-string number or throw UsageError naming the option.
int parse_int(const std::string& s, const std::string& option);
double parse_double(const std::string& s, const std::string& option);

}  // namespace tandem::cli
