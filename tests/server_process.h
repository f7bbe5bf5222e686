// Runs a server binary as a child process for a test and reads the port it prints:
// a first stdout line "listening on http://127.0.0.1:PORT" (tandem-cloud's contract), or
// another line given by ServerProcess::Options::ready (tandem-compose's "open http://...").
// Options also set resource limits for the child (a hostile environment: few descriptors)
// and send its stderr to a file.
#pragma once
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace tandem_test {

class ServerProcess {
public:
    struct Options {
        // The first stdout line must match; group 1 is the port.
        std::string ready = "listening on http://127\\.0\\.0\\.1:([0-9]+)";
        std::vector<std::pair<int, rlim_t>> rlimits;  // e.g. {RLIMIT_NOFILE, 64}: soft and hard
        std::string stderr_path;                      // "" = the test's stderr
        uid_t as_user = 0;  // nonzero: run as this user and group id (only when the test runs as root)
        int timeout_ms = 60000;
    };
    ServerProcess(const std::string& bin, const std::vector<std::string>& args, int timeout_ms = 60000)
        : ServerProcess(bin, args, with_timeout(timeout_ms)) {}
    ServerProcess(const std::string& bin, const std::vector<std::string>& args, const Options& opt) {
        int fds[2];
        if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
        pid_ = fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            dup2(fds[1], 1);
            close(fds[0]);
            close(fds[1]);
            if (!opt.stderr_path.empty()) {
                const int err = open(opt.stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
                if (err >= 0) dup2(err, 2), close(err);
            }
            for (const auto& [resource, value] : opt.rlimits) {
                rlimit rl{value, value};
                if (setrlimit(resource, &rl) != 0) _exit(126);
            }
            if (opt.as_user != 0 && geteuid() == 0 && (setgid(opt.as_user) != 0 || setuid(opt.as_user) != 0)) _exit(126);
            std::vector<std::string> copy = args;
            std::vector<char*> argv;
            std::string b = bin;
            argv.push_back(b.data());
            for (auto& a : copy) argv.push_back(a.data());
            argv.push_back(nullptr);
            execv(b.c_str(), argv.data());
            _exit(127);
        }
        close(fds[1]);
        fd_ = fds[0];
        first_line_ = read_line(opt.timeout_ms);
        std::smatch m;
        if (!std::regex_search(first_line_, m, std::regex(opt.ready)))
            throw std::runtime_error(bin + " did not start: first line '" + first_line_ + "'");
        port_ = std::stoi(m[1]);
    }
    ~ServerProcess() { kill(SIGKILL); }

    pid_t pid() const { return pid_; }
    int port() const { return port_; }
    const std::string& first_line() const { return first_line_; }
    // Whether the process is still running; when it has ended, *status gets its wait status.
    bool alive(int* status = nullptr) {
        if (pid_ <= 0) return false;
        int st = 0;
        if (waitpid(pid_, &st, WNOHANG) != pid_) return true;
        pid_ = -1;
        if (status) *status = st;
        return false;
    }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

    void kill(int sig = SIGTERM) {
        if (pid_ > 0) {
            ::kill(pid_, sig);
            waitpid(pid_, nullptr, 0);
            pid_ = -1;
        }
        if (fd_ >= 0) close(fd_);
        fd_ = -1;
    }

private:
    static Options with_timeout(int ms) {
        Options o;
        o.timeout_ms = ms;
        return o;
    }
    std::string read_line(int timeout_ms) {
        std::string line;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        while (std::chrono::steady_clock::now() < deadline) {
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, 100) <= 0) continue;
            char c;
            if (read(fd_, &c, 1) != 1) break;
            if (c == '\n') return line;
            line += c;
        }
        return line;
    }
    pid_t pid_ = -1;
    int fd_ = -1;
    int port_ = 0;
    std::string first_line_;
};

}  // namespace tandem_test
