// A raw HTTP/1.1 client for tests of the example servers: one request per connection
// (Connection: close), the whole answer read back, headers lowercased. It checks what a
// real client library would smooth over (exact status lines, Content-Length vs body).
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include <doctest/doctest.h>

namespace tandem_test {

struct Resp {
    int status = 0;  // 0: no status line received
    std::map<std::string, std::string> headers;  // lowercased names
    std::string body;
    size_t content_length = 0;
    double seconds = 0;
    nlohmann::json j() const { return nlohmann::json::parse(body); }
};

// token: sent as a bearer token when not empty; extra_headers: "Name: value\r\n" lines.
inline Resp http(int port, const std::string& method, const std::string& target, const std::string& body = "",
                 const std::string& token = "", const std::string& extra_headers = "") {
    auto t0 = std::chrono::steady_clock::now();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    timeval tv{40, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(fd, (sockaddr*)&a, sizeof a) == 0);
    std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
    if (!token.empty()) req += "Authorization: Bearer " + token + "\r\n";
    if (!body.empty() || method == "POST") req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    req += extra_headers + "\r\n" + body;
    size_t off = 0;
    while (off < req.size()) {
        ssize_t n = send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
        if (n <= 0) break;  // the server may hang up early (413)
        off += (size_t)n;
    }
    std::string raw;
    char buf[65536];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        raw.append(buf, (size_t)n);
    }
    close(fd);
    Resp r;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    size_t hdr_end = raw.find("\r\n\r\n");
    if (raw.rfind("HTTP/1.1 ", 0) != 0 || hdr_end == std::string::npos) return r;
    r.status = std::stoi(raw.substr(9, 3));
    size_t pos = raw.find("\r\n") + 2;
    while (pos < hdr_end) {
        size_t eol = raw.find("\r\n", pos);
        std::string line = raw.substr(pos, eol - pos);
        size_t colon = line.find(':');
        std::string name = line.substr(0, colon);
        for (char& c : name) c = (char)std::tolower((unsigned char)c);
        std::string value = line.substr(colon + 1);
        value.erase(0, value.find_first_not_of(' '));
        r.headers[name] = value;
        pos = eol + 2;
    }
    r.body = raw.substr(hdr_end + 4);
    if (r.headers.count("content-length")) r.content_length = std::stoul(r.headers["content-length"]);
    return r;
}

}  // namespace tandem_test
