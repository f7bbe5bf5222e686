// Shared by the chaos tests (tests/chaos/): a small corpus for tandem-cloud, and the cloud as
// a process with its stderr in a file.
#pragma once
#include <sys/stat.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "server_process.h"
#include "test_util.h"

namespace tandem_test {

// Three short documents: enough for memory requests to produce notes.
inline void write_test_corpus(const std::string& dir) {
    ::mkdir(dir.c_str(), 0755);
    write_file(dir + "/climate.txt",
               "Climate change is the defining challenge of our time.\n"
               "Rising sea levels threaten small island states in the Pacific. The Paris Agreement commits "
               "countries to limit warming well below two degrees.\n"
               "Adaptation finance for vulnerable island nations must double by the end of the decade.\n");
    write_file(dir + "/nuclear.md",
               "# Disarmament\n"
               "The Treaty on the Non-Proliferation of Nuclear Weapons entered into force in 1970.\n"
               "Verification of nuclear arsenals requires trust and regular inspections.\n");
    write_file(dir + "/trade.txt",
               "Open trade lifted millions out of poverty.\n"
               "Tariffs on agricultural exports hurt developing economies the most.\n");
}

// Lines of a file that contain `needle`.
inline int count_lines_with(const std::string& path, const std::string& needle) {
    std::ifstream f(path);
    int n = 0;
    for (std::string line; std::getline(f, line);) n += line.find(needle) != std::string::npos;
    return n;
}

// tandem-cloud on a fresh corpus and database in `dir`, stderr in dir/cloud.err.
struct CloudProcess {
    std::string dir, err;
    std::unique_ptr<ServerProcess> proc;
    CloudProcess(const std::string& d, std::vector<std::string> extra = {}, ServerProcess::Options opt = {}) : dir(d) {
        write_test_corpus(dir + "/corpus");
        err = dir + "/cloud.err";
        opt.stderr_path = err;
        std::vector<std::string> args = {"--port", "0", "--corpus", dir + "/corpus", "--db", dir + "/cloud.db"};
        args.insert(args.end(), extra.begin(), extra.end());
        proc = std::make_unique<ServerProcess>(TANDEM_CLOUD_BIN, args, opt);
    }
    int port() const { return proc->port(); }
    pid_t pid() const { return proc->pid(); }
};

}  // namespace tandem_test
