// Helpers shared by the tests: where ../shared lives, temp dirs, reading files.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unistd.h>

namespace tandem_test {

// A seed for a randomized test: TANDEM_TEST_SEED when set (to replay a failure with the seed
// it printed), otherwise a fresh one.
inline uint32_t test_seed() {
    if (const char* s = std::getenv("TANDEM_TEST_SEED")) return (uint32_t)std::strtoul(s, nullptr, 10);
    return std::random_device{}();
}

// Absolute path of a file under ../shared (the project's test data).
inline std::string shared_path(const std::string& rel) { return std::string(TANDEM_SHARED_DIR) + "/" + rel; }

inline std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open test file " + path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

inline void write_file(const std::string& path, const std::string& bytes) {
    std::ofstream f(path, std::ios::binary);
    f.write(bytes.data(), (std::streamsize)bytes.size());
    if (!f) throw std::runtime_error("cannot write test file " + path);
}

// A fresh directory under $TMPDIR, removed when the object goes away.
struct TempDir {
    std::string path;
    TempDir() {
        const char* base = std::getenv("TMPDIR");
        std::string tmpl = std::string(base ? base : "/tmp") + "/tandem-test-XXXXXX";
        if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
        path = tmpl;
    }
    ~TempDir() { std::string cmd = "rm -rf '" + path + "'"; (void)std::system(cmd.c_str()); }
    std::string file(const std::string& name) const { return path + "/" + name; }
};

}  // namespace tandem_test
