// tandem-compose (the real binary, on the 260K-parameter story model) short of threads: the
// attack that used to abort it (exit 134, "terminate called without an active exception")
// was 60 idle connections under a 40-process limit, one thread each. RLIMIT_NPROC does not
// bind root, so as root the server runs as `nobody` (uid 65534); otherwise the limit is set
// above the threads this user already has.
#include <doctest/doctest.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <fstream>
#include <regex>
#include <thread>

#include "chaos_util.h"

using namespace tandem_test;

namespace {

constexpr uid_t kNobody = 65534;

// Threads of every process of `uid` (what RLIMIT_NPROC counts).
int threads_of_user(uid_t uid) {
    int n = 0;
    DIR* d = ::opendir("/proc");
    while (dirent* e = d ? ::readdir(d) : nullptr) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        std::ifstream f(std::string("/proc/") + e->d_name + "/status");
        long owner = -1, threads = 0;
        for (std::string line; std::getline(f, line);) {
            if (line.rfind("Uid:", 0) == 0) owner = std::atol(line.c_str() + 4);
            if (line.rfind("Threads:", 0) == 0) threads = std::atol(line.c_str() + 8);
        }
        if (owner == (long)uid) n += (int)threads;
    }
    if (d) ::closedir(d);
    return n;
}

// A thread limit of `extra` threads for the server's user.
ServerProcess::Options thread_limit(int extra) {
    ServerProcess::Options o;
    o.ready = "open http://127\\.0\\.0\\.1:([0-9]+)/\\?token=";
    const bool root = ::geteuid() == 0;
    if (root) o.as_user = kNobody;
    o.rlimits = {{RLIMIT_NPROC, (rlim_t)(threads_of_user(root ? kNobody : ::geteuid()) + extra)}};
    return o;
}

const std::vector<std::string> kArgs = {"--model", shared_path("models/stories260K.gguf"), "--private"};

}  // namespace

TEST_CASE("chaos: tandem-compose with a 40-thread limit and 60 idle connections keeps serving") {
    raise_fd_limit();
    TempDir tmp;
    ServerProcess::Options opt = thread_limit(40);
    opt.stderr_path = tmp.file("compose.err");
    ServerProcess compose(TANDEM_COMPOSE_BIN, kArgs, opt);
    std::smatch m;
    const std::string line = compose.first_line();
    REQUIRE(std::regex_search(line, m, std::regex("token=([0-9a-f]+)")));
    const std::string token = m[1];
    std::vector<int> idle;
    for (int i = 0; i < 60; i++) idle.push_back(connect_loopback(compose.port()));
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    int status = 0;
    INFO("stderr: " << read_file(opt.stderr_path));
    REQUIRE_MESSAGE(compose.alive(&status), "exited with wait status " << status);
    const std::string host = "Host: 127.0.0.1:" + std::to_string(compose.port()) + "\r\n";
    CHECK(http_status(http_exchange(compose.port(), "GET /api/state?token=" + token + " HTTP/1.1\r\n" + host +
                                                        "Connection: close\r\n\r\n")) == 200);
    CHECK(thread_count(compose.pid()) <= 40);
    for (int fd : idle) ::close(fd);
}

TEST_CASE("chaos: tandem-compose that cannot start its threads exits 1 with a message") {
    TempDir tmp;
    ServerProcess::Options opt = thread_limit(8);
    opt.stderr_path = tmp.file("compose.err");
    CHECK_THROWS(ServerProcess(TANDEM_COMPOSE_BIN, kArgs, opt));  // no "open http://..." line: it does not serve
    const std::string err = read_file(opt.stderr_path);
    INFO("stderr: " << err);
    CHECK(err.find("tandem-compose: error: ") != std::string::npos);
    CHECK(err.find("terminate called") == std::string::npos);
}
