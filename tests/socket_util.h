// Raw loopback sockets and /proc readings for tests that misbehave as clients (idle, slow or
// too many connections) and watch what the server process does meanwhile.
#pragma once
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

namespace tandem_test {

// A blocking TCP connection to 127.0.0.1:port; -1 when connect fails.
inline int connect_loopback(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, (sockaddr*)&a, sizeof a) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

inline bool send_all(int fd, const std::string& bytes) {
    for (size_t off = 0; off < bytes.size();) {
        const ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return false;
        off += (size_t)n;
    }
    return true;
}

// Reads until the peer closes (or resets) the connection or timeout_ms pass. Returns true when
// it closed; what arrived before is appended to *got when given.
inline bool wait_closed(int fd, int timeout_ms, std::string* got = nullptr) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    char buf[4096];
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, (int)std::max<int64_t>(0, left.count())) <= 0) {
            if (left.count() <= 0) return false;
            continue;
        }
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) return true;
        if (got) got->append(buf, (size_t)n);
    }
}

// True when the peer has closed the connection already (checked without waiting).
inline bool is_closed(int fd) { return wait_closed(fd, 1); }

// One whole HTTP/1.1 exchange on a new connection ("Connection: close"); returns the raw
// response ("" when none came within timeout_ms).
inline std::string http_exchange(int port, const std::string& request, int timeout_ms = 10000) {
    const int fd = connect_loopback(port);
    if (fd < 0) return "";
    std::string got;
    if (send_all(fd, request)) wait_closed(fd, timeout_ms, &got);
    ::close(fd);
    return got;
}

// The status of a raw response ("HTTP/1.1 200 OK..." -> 200); 0 when there is none.
inline int http_status(const std::string& raw) {
    return raw.rfind("HTTP/1.", 0) == 0 && raw.size() >= 12 ? std::atoi(raw.c_str() + 9) : 0;
}

// ---- /proc -----------------------------------------------------------------------------

// Threads of a process (pid 0: this one).
inline int thread_count(pid_t pid = 0) {
    const std::string dir = pid ? "/proc/" + std::to_string(pid) + "/task" : "/proc/self/task";
    DIR* d = ::opendir(dir.c_str());
    if (!d) return -1;
    int n = 0;
    while (dirent* e = ::readdir(d))
        if (e->d_name[0] != '.') n++;
    ::closedir(d);
    return n;
}

// A "Name:  value kB" field of /proc/PID/status in KiB (VmRSS, VmSize, ...); -1 when absent.
inline long proc_status_kib(pid_t pid, const std::string& field) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(f, line);)
        if (line.rfind(field + ":", 0) == 0) return std::atol(line.c_str() + field.size() + 1);
    return -1;
}

// User + system CPU seconds a process has used (/proc/PID/stat fields 14 and 15).
inline double cpu_seconds(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const size_t paren = all.rfind(')');
    if (paren == std::string::npos) return -1;
    std::istringstream rest(all.substr(paren + 2));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; i++) {
        if (i == 14) utime = std::stoull(field);
        if (i == 15) stime = std::stoull(field);
    }
    return double(utime + stime) / (double)::sysconf(_SC_CLK_TCK);
}

// Raises this process's soft open-file limit to its hard limit (tests opening many sockets).
inline void raise_fd_limit() {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &rl);
    }
}

}  // namespace tandem_test
