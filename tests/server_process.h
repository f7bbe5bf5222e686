// Runs a server binary as a child process for a test and reads the port it prints:
// a first stdout line "listening on http://127.0.0.1:PORT" (tandem-cloud's contract).
#pragma once
#include <poll.h>
#include <signal.h>
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
    ServerProcess(const std::string& bin, const std::vector<std::string>& args, int timeout_ms = 60000) {
        int fds[2];
        if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
        pid_ = fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            dup2(fds[1], 1);
            close(fds[0]);
            close(fds[1]);
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
        const std::string line = read_line(timeout_ms);
        std::smatch m;
        if (!std::regex_search(line, m, std::regex("listening on http://127\\.0\\.0\\.1:([0-9]+)")))
            throw std::runtime_error(bin + " did not start: first line '" + line + "'");
        port_ = std::stoi(m[1]);
    }
    ~ServerProcess() { kill(SIGKILL); }

    int port() const { return port_; }
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
};

}  // namespace tandem_test
