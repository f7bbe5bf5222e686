// tandem::Sha256 (FIPS 180-4 vectors) and tandem::download_file / `tandem pull` against a
// loopback HTTP server inside the test that supports Range, can cut the connection mid-body,
// can ignore Range, can answer 404 and can send slowly.
#include <doctest/doctest.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "tandem/download.h"
#include "tandem/sha256.h"
#include "test_util.h"

using namespace tandem;
using tandem_test::TempDir;
namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

// ---- SHA-256 -------------------------------------------------------------------------------

TEST_CASE("sha256: FIPS 180-4 example vectors") {
    CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu") ==
          "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    CHECK(sha256_hex(std::string(1000000, 'a')) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256: streaming in odd pieces equals one call; padding boundaries 55/56/63/64 bytes") {
    std::string s;
    for (int i = 0; i < 1000; i++) s += (char)(i * 7 + 3);
    for (size_t len : {0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 1000}) {
        const std::string part = s.substr(0, len);
        Sha256 h;
        for (size_t i = 0, step = 1; i < part.size(); i += step, step = step % 13 + 1)
            h.update(part.data() + i, std::min(step, part.size() - i));
        CHECK(h.hex_digest() == sha256_hex(part));
    }
    CHECK(sha256_hex(std::string(55, 'a')) == "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    CHECK(sha256_hex(std::string(64, 'a')) == "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
    CHECK(is_sha256_hex(sha256_hex("x")));
    CHECK_FALSE(is_sha256_hex("abc"));
    CHECK_FALSE(is_sha256_hex(std::string(64, 'g')));
}

// ---- a loopback file server --------------------------------------------------------------

// Serves one file at any path. One connection at a time (the client makes one at a time).
class RangeServer {
public:
    // NoLength: 200 without Content-Length, the body ends when the connection closes.
    // Redirect: 302 to `redirect_to`.
    enum class Mode { Normal, IgnoreRange, NotFound, NoLength, Redirect };
    explicit RangeServer(std::string body) : body_(std::move(body)) {
        tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
        acceptor_.open(ep.protocol());
        acceptor_.set_option(tcp::acceptor::reuse_address(true));
        acceptor_.bind(ep);
        acceptor_.listen();
        port_ = acceptor_.local_endpoint().port();
        thread_ = std::thread([this] { serve(); });
    }
    ~RangeServer() {
        stop_ = true;
        boost::system::error_code ec;
        tcp::socket wake(ioc_);
        wake.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), ec);  // unblocks accept()
        thread_.join();
    }
    std::string url(const std::string& path = "/models/m.gguf") const {
        return "http://127.0.0.1:" + std::to_string(port_) + path;
    }

    std::atomic<Mode> mode{Mode::Normal};
    std::atomic<int64_t> cut_after{-1};  // next response: close after this many body bytes (once)
    std::atomic<int> chunk_delay_ms{0};  // pause between 16 KiB chunks
    std::atomic<int> requests{0};
    std::string redirect_to;
    std::vector<std::string> ranges() {
        std::lock_guard<std::mutex> lk(mu_);
        return ranges_;
    }

private:
    void serve() {
        while (!stop_) {
            tcp::socket s(ioc_);
            boost::system::error_code ec;
            acceptor_.accept(s, ec);
            if (ec || stop_) continue;
            handle(s);
        }
    }
    void handle(tcp::socket& s) {
        boost::system::error_code ec;
        boost::beast::flat_buffer buf;
        http::request<http::string_body> req;
        http::read(s, buf, req, ec);
        if (ec) return;
        requests++;
        const std::string range(req[http::field::range]);
        {
            std::lock_guard<std::mutex> lk(mu_);
            ranges_.push_back(range);
        }
        std::string head;
        size_t from = 0;
        const size_t n = body_.size();
        long long start = -1;
        if (mode == Mode::Redirect) {
            head = "HTTP/1.1 302 Found\r\nLocation: " + redirect_to + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            asio::write(s, asio::buffer(head), ec);
            return;
        }
        if (mode == Mode::NoLength) {
            head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n";
            asio::write(s, asio::buffer(head), ec);
            asio::write(s, asio::buffer(body_), ec);
            s.shutdown(tcp::socket::shutdown_both, ec);
            return;
        }
        if (mode == Mode::NotFound) {
            const std::string msg = "no such model";
            head = "HTTP/1.1 404 Not Found\r\nContent-Length: " + std::to_string(msg.size()) + "\r\nConnection: close\r\n\r\n" + msg;
            asio::write(s, asio::buffer(head), ec);
            return;
        }
        if (mode == Mode::Normal && std::sscanf(range.c_str(), "bytes=%lld-", &start) == 1) {
            if ((size_t)start >= n) {
                head = "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */" + std::to_string(n) +
                       "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                asio::write(s, asio::buffer(head), ec);
                return;
            }
            from = (size_t)start;
            head = "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes " + std::to_string(from) + "-" + std::to_string(n - 1) + "/" +
                   std::to_string(n) + "\r\n";
        } else {
            head = "HTTP/1.1 200 OK\r\n";
        }
        head += "Content-Length: " + std::to_string(n - from) + "\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n";
        asio::write(s, asio::buffer(head), ec);
        const int64_t cut = cut_after.exchange(-1);
        const size_t end = cut >= 0 ? std::min(n, from + (size_t)cut) : n;
        for (size_t off = from; off < end && !ec && !stop_; off += 16384) {
            asio::write(s, asio::buffer(body_.data() + off, std::min<size_t>(16384, end - off)), ec);
            if (chunk_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(chunk_delay_ms.load()));
        }
        s.shutdown(tcp::socket::shutdown_both, ec);  // a cut: the client sees the body end early
    }

    std::string body_;
    asio::io_context ioc_;
    tcp::acceptor acceptor_{ioc_};
    unsigned short port_ = 0;
    std::thread thread_;
    std::atomic<bool> stop_{false};
    std::mutex mu_;
    std::vector<std::string> ranges_;
};

static std::string random_bytes(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (auto& c : s) c = (char)(rng() & 0xff);
    return s;
}

static int64_t size_of(const std::string& path) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    return f ? (int64_t)f.tellg() : -1;
}

struct Fixture {
    std::string body = random_bytes(1 << 20, 42);
    std::string sha = sha256_hex(body);
    RangeServer server{body};
    TempDir dir;
    DownloadParams params(const std::string& name = "m.gguf") {
        DownloadParams p;
        p.url = server.url();
        p.sha256 = sha;
        p.out_path = dir.file(name);
        p.retries = 0;
        return p;
    }
};

static DownloadError::Kind kind_of(const DownloadParams& p, std::string* msg = nullptr) {
    try {
        download_file(p);
    } catch (const DownloadError& e) {
        if (msg) *msg = e.what();
        return e.kind;
    }
    FAIL("download_file did not throw");
    return DownloadError::Kind::BadArgument;
}

// ---- download_file ---------------------------------------------------------------------------

TEST_CASE("download: a full download lands at PATH with the right bytes, and a second call finds it there") {
    Fixture f;
    DownloadParams p = f.params();
    int64_t last_done = 0, last_total = 0;
    p.on_progress = [&](const DownloadProgress& pr) { last_done = pr.bytes_done, last_total = pr.bytes_total; };
    const DownloadResult r = download_file(p);
    CHECK(r.bytes == (int64_t)f.body.size());
    CHECK(r.sha256 == f.sha);
    CHECK(r.attempts == 1);
    CHECK(r.resumed_from == 0);
    CHECK_FALSE(r.restarted);
    CHECK(tandem_test::read_file(p.out_path) == f.body);
    CHECK(size_of(p.out_path + ".part") == -1);
    CHECK(last_done == (int64_t)f.body.size());  // the final progress report
    CHECK(last_total == (int64_t)f.body.size());
    const DownloadResult again = download_file(p);
    CHECK(again.already_present);
    CHECK(again.attempts == 0);
    CHECK(f.server.requests == 1);
}

TEST_CASE("download: a connection cut mid-body leaves a .part that the next call resumes with a Range request") {
    Fixture f;
    DownloadParams p = f.params();
    f.server.cut_after = 300000;
    std::string msg;
    CHECK(kind_of(p, &msg) == DownloadError::Kind::Network);
    CHECK(msg.find("run again to resume") != std::string::npos);
    const int64_t kept = size_of(p.out_path + ".part");
    CHECK(kept == 300000);
    CHECK(size_of(p.out_path) == -1);  // nothing at PATH until verified
    const DownloadResult r = download_file(p);
    CHECK(r.resumed_from == kept);
    CHECK_FALSE(r.restarted);
    CHECK(f.server.ranges().back() == "bytes=300000-");
    CHECK(tandem_test::read_file(p.out_path) == f.body);
    CHECK(size_of(p.out_path + ".part") == -1);
}

TEST_CASE("download: with retries a cut transfer resumes within the same call") {
    Fixture f;
    DownloadParams p = f.params();
    p.retries = 2;
    f.server.cut_after = 123457;
    const DownloadResult r = download_file(p);
    CHECK(r.attempts == 2);
    CHECK(f.server.ranges() == std::vector<std::string>{"", "bytes=123457-"});
    CHECK(tandem_test::read_file(p.out_path) == f.body);
}

TEST_CASE("download: a server that ignores Range (200 instead of 206) restarts the file cleanly") {
    Fixture f;
    DownloadParams p = f.params();
    tandem_test::write_file(p.out_path + ".part", std::string(5000, 'x'));  // a stale, wrong prefix
    f.server.mode = RangeServer::Mode::IgnoreRange;
    const DownloadResult r = download_file(p);
    CHECK(r.restarted);
    CHECK(f.server.ranges().front() == "bytes=5000-");
    CHECK(tandem_test::read_file(p.out_path) == f.body);
}

TEST_CASE("download: a wrong digest is a checksum error naming both digests, and the .part is removed") {
    Fixture f;
    DownloadParams p = f.params();
    p.sha256 = sha256_hex("something else");
    std::string msg;
    CHECK(kind_of(p, &msg) == DownloadError::Kind::Checksum);
    CHECK(msg.find("expected sha256 " + p.sha256) != std::string::npos);
    CHECK(msg.find("got " + f.sha) != std::string::npos);
    CHECK(size_of(p.out_path + ".part") == -1);
    CHECK(size_of(p.out_path) == -1);
}

TEST_CASE("download: a .part with wrong bytes resumed by an honest server fails the checksum and is removed") {
    Fixture f;
    DownloadParams p = f.params();
    tandem_test::write_file(p.out_path + ".part", std::string(1000, 'x'));
    CHECK(kind_of(p) == DownloadError::Kind::Checksum);
    CHECK(size_of(p.out_path + ".part") == -1);
    CHECK(download_file(p).bytes == (int64_t)f.body.size());  // and the next call starts clean
}

TEST_CASE("download: a complete .part answered with 416 is verified and renamed") {
    Fixture f;
    DownloadParams p = f.params();
    tandem_test::write_file(p.out_path + ".part", f.body);
    const DownloadResult r = download_file(p);
    CHECK(f.server.ranges().back() == "bytes=1048576-");
    CHECK(r.bytes == (int64_t)f.body.size());
    CHECK(tandem_test::read_file(p.out_path) == f.body);
}

TEST_CASE("download: HTTP 404 is an http error with the status; no file is left") {
    Fixture f;
    f.server.mode = RangeServer::Mode::NotFound;
    DownloadParams p = f.params();
    p.retries = 3;  // not retried
    std::string msg;
    try {
        download_file(p);
        FAIL("no error");
    } catch (const DownloadError& e) {
        CHECK(e.kind == DownloadError::Kind::Http);
        CHECK(e.http_status == 404);
        msg = e.what();
    }
    CHECK(msg.find("HTTP 404 from " + p.url) != std::string::npos);
    CHECK(msg.find("no such model") != std::string::npos);
    CHECK(f.server.requests == 1);
    CHECK(size_of(p.out_path) == -1);
}

TEST_CASE("download: a refused connection is a refused error") {
    asio::io_context ioc;
    tcp::acceptor a(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const int port = a.local_endpoint().port();
    a.close();  // nothing listens there now
    TempDir dir;
    DownloadParams p;
    p.url = "http://127.0.0.1:" + std::to_string(port) + "/m.gguf";
    p.sha256 = sha256_hex("x");
    p.out_path = dir.file("m.gguf");
    std::string msg;
    CHECK(kind_of(p, &msg) == DownloadError::Kind::Refused);
    CHECK(msg.find("127.0.0.1:" + std::to_string(port)) != std::string::npos);
}

TEST_CASE("download: a host name that does not resolve is a dns error (.invalid never resolves, RFC 6761)") {
    TempDir dir;
    DownloadParams p;
    p.url = "http://tandem-model-host.invalid/m.gguf";
    p.sha256 = sha256_hex("x");
    p.out_path = dir.file("m.gguf");
    std::string msg;
    CHECK(kind_of(p, &msg) == DownloadError::Kind::Dns);
    CHECK(msg.find("tandem-model-host.invalid") != std::string::npos);
}

TEST_CASE("download: bad arguments are rejected before any request") {
    Fixture f;
    DownloadParams p = f.params();
    p.sha256 = "abc";
    CHECK(kind_of(p) == DownloadError::Kind::BadArgument);
    p = f.params();
    p.url = "ftp://example.org/m";
    CHECK(kind_of(p) == DownloadError::Kind::BadArgument);
    p = f.params();
    p.out_path = f.dir.path + "/";
    CHECK(kind_of(p) == DownloadError::Kind::BadArgument);
    p = f.params();
    p.out_path = "/nonexistent-dir-tandem/m.gguf";
    std::string msg;
    CHECK(kind_of(p, &msg) == DownloadError::Kind::Disk);
    CHECK(msg.find("/nonexistent-dir-tandem/m.gguf.part") != std::string::npos);
    CHECK(f.server.requests == 0);
}

TEST_CASE("download: cancellation keeps the .part, and the next call resumes it") {
    Fixture f;
    f.server.chunk_delay_ms = 10;  // 64 chunks: ~0.6 s
    DownloadParams p = f.params();
    std::atomic<bool> cancel{false};
    p.cancel = &cancel;
    p.on_progress = [&](const DownloadProgress& pr) { if (pr.bytes_done > 100000) cancel = true; };
    CHECK(kind_of(p) == DownloadError::Kind::Cancelled);
    const int64_t kept = size_of(p.out_path + ".part");
    CHECK(kept > 100000);
    CHECK(kept < (int64_t)f.body.size());
    cancel = false;
    p.on_progress = nullptr;
    f.server.chunk_delay_ms = 0;
    const DownloadResult r = download_file(p);
    CHECK(r.resumed_from == kept);
    CHECK(tandem_test::read_file(p.out_path) == f.body);
}

// ---- hostile output directories and servers -------------------------------------------------

// Names in a directory (without . and ..).
static std::set<std::string> listing(const std::string& dir) {
    std::set<std::string> names;
    if (DIR* d = opendir(dir.c_str())) {
        while (dirent* e = readdir(d))
            if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") names.insert(e->d_name);
        closedir(d);
    }
    return names;
}

TEST_CASE("download: a symlink planted at PATH.part is refused before any request; its target is untouched") {
    Fixture f;
    DownloadParams p = f.params();
    const std::string victim = f.dir.file("victim.txt");
    tandem_test::write_file(victim, "precious");
    REQUIRE(symlink(victim.c_str(), (p.out_path + ".part").c_str()) == 0);
    std::string msg;
    CHECK(kind_of(p, &msg) == DownloadError::Kind::Disk);
    CHECK(msg.find("refusing to write to " + p.out_path + ".part: it is a symbolic link") != std::string::npos);
    CHECK(tandem_test::read_file(victim) == "precious");
    CHECK(f.server.requests == 0);
    // A dangling link (to a file that does not exist yet) is refused too, and creates nothing.
    REQUIRE(unlink((p.out_path + ".part").c_str()) == 0);
    REQUIRE(symlink(f.dir.file("created-by-attacker").c_str(), (p.out_path + ".part").c_str()) == 0);
    CHECK(kind_of(p) == DownloadError::Kind::Disk);
    CHECK(size_of(f.dir.file("created-by-attacker")) == -1);
    CHECK(listing(f.dir.path) == std::set<std::string>{"m.gguf.part", "victim.txt"});
}

TEST_CASE("download: a FIFO or a directory at PATH.part is refused, without blocking") {
    Fixture f;
    DownloadParams p = f.params();
    REQUIRE(mkfifo((p.out_path + ".part").c_str(), 0644) == 0);  // fopen(.., "ab") would wait for a reader forever
    std::string msg;
    CHECK(kind_of(p, &msg) == DownloadError::Kind::Disk);
    CHECK(msg.find("it is a FIFO") != std::string::npos);
    REQUIRE(unlink((p.out_path + ".part").c_str()) == 0);
    REQUIRE(mkdir((p.out_path + ".part").c_str(), 0755) == 0);
    CHECK(kind_of(p, &msg) == DownloadError::Kind::Disk);
    CHECK(msg.find("it is a directory") != std::string::npos);
    CHECK(f.server.requests == 0);
}

TEST_CASE("download: failed attempts leave no empty .part behind") {
    Fixture f;
    DownloadParams p = f.params();
    f.server.mode = RangeServer::Mode::NotFound;
    CHECK(kind_of(p) == DownloadError::Kind::Http);
    p.url = "http://127.0.0.1:1/m.gguf";  // refused
    CHECK(kind_of(p) == DownloadError::Kind::Refused);
    CHECK(listing(f.dir.path).empty());
}

TEST_CASE("download: max_bytes refuses a bigger announced size before writing; a body past it is cut and removed") {
    Fixture f;
    DownloadParams p = f.params();
    p.max_bytes = 100000;
    std::string msg;
    CHECK(kind_of(p, &msg) == DownloadError::Kind::TooLarge);
    CHECK(msg.find("is 1048576 bytes, more than the limit of 100000") != std::string::npos);
    CHECK(listing(f.dir.path).empty());
    // No Content-Length: the limit stops the body as it comes.
    f.server.mode = RangeServer::Mode::NoLength;
    CHECK(kind_of(p, &msg) == DownloadError::Kind::TooLarge);
    CHECK(msg.find("sent more than the limit of 100000 bytes") != std::string::npos);
    CHECK(listing(f.dir.path).empty());
    // Within the limit (or without one) the same server's file arrives whole.
    p.max_bytes = 0;
    CHECK(download_file(p).bytes == (int64_t)f.body.size());
}

TEST_CASE("download: a redirect to a scheme other than http(s) is refused, and nothing connects there") {
    Fixture f;
    asio::io_context ioc;
    tcp::acceptor ftp(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    ftp.non_blocking(true);
    f.server.mode = RangeServer::Mode::Redirect;
    f.server.redirect_to = "ftp://127.0.0.1:" + std::to_string(ftp.local_endpoint().port()) + "/m.gguf";
    DownloadParams p = f.params();
    std::string msg;
    try {
        download_file(p);
        FAIL("no error");
    } catch (const DownloadError& e) {
        CHECK(e.kind == DownloadError::Kind::Http);
        CHECK(e.http_status == 302);
        msg = e.what();
    }
    CHECK(msg.find("redirects to " + f.server.redirect_to + ": refused") != std::string::npos);
    boost::system::error_code ec;
    tcp::socket s(ioc);
    ftp.accept(s, ec);
    CHECK(ec == asio::error::would_block);  // libcurl never went there
    CHECK(listing(f.dir.path).empty());
}

// ---- the tandem pull command -----------------------------------------------------------------

#ifdef TANDEM_BIN
// Runs `sh -c script` and returns its exit status; stdout+stderr go to `log`.
static int sh(const std::string& script, const std::string& log) {
    const std::string cmd = "sh -c '" + script + "' >" + log + " 2>&1";
    const int st = std::system(cmd.c_str());
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST_CASE("tandem pull: downloads, verifies and says so; a wrong digest exits 1 with both digests") {
    Fixture f;
    const std::string out = f.dir.file("m.gguf"), log = f.dir.file("log");
    CHECK(sh(std::string(TANDEM_BIN) + " pull " + f.server.url() + " --sha256 " + f.sha + " --out " + out, log) == 0);
    std::string text = tandem_test::read_file(log);
    CHECK(text.find("pull: " + f.server.url() + " -> " + out) != std::string::npos);
    CHECK(text.find("1048576 bytes, sha256 " + f.sha + " verified") != std::string::npos);
    CHECK(tandem_test::read_file(out) == f.body);
    CHECK(sh(std::string(TANDEM_BIN) + " pull " + f.server.url() + " --sha256 " + f.sha + " --out " + out, log) == 0);
    CHECK(tandem_test::read_file(log).find("already there") != std::string::npos);
    const std::string wrong = sha256_hex("no");
    CHECK(sh(std::string(TANDEM_BIN) + " pull " + f.server.url() + " --sha256 " + wrong + " --out " + f.dir.file("w"), log) == 1);
    text = tandem_test::read_file(log);
    CHECK(text.find("checksum error") != std::string::npos);
    CHECK(text.find(wrong) != std::string::npos);
    CHECK(sh(std::string(TANDEM_BIN) + " pull " + f.server.url(), log) == 2);  // no --sha256
    CHECK(tandem_test::read_file(log).find("--sha256 HEX is required") != std::string::npos);
}

TEST_CASE("tandem pull: the file is named after the URL by default; 404 exits 1 naming the status") {
    Fixture f;
    const std::string log = f.dir.file("log");
    CHECK(sh("cd " + f.dir.path + " && " + TANDEM_BIN + " pull " + f.server.url("/a/b/model-x.gguf?dl=1") + " --sha256 " + f.sha, log) == 0);
    CHECK(size_of(f.dir.file("model-x.gguf")) == (int64_t)f.body.size());
    f.server.mode = RangeServer::Mode::NotFound;
    CHECK(sh(std::string(TANDEM_BIN) + " pull " + f.server.url() + " --sha256 " + f.sha + " --out " + f.dir.file("n"), log) == 1);
    CHECK(tandem_test::read_file(log).find("http error: HTTP 404") != std::string::npos);
}

TEST_CASE("tandem pull: a file size limit is a clear disk error, not a crash") {
    Fixture f;
    const std::string log = f.dir.file("log");
    // ulimit -f counts 512- or 1024-byte blocks depending on the shell: both far below 1 MiB
    CHECK(sh("ulimit -f 64; exec " + std::string(TANDEM_BIN) + " pull " + f.server.url() + " --sha256 " + f.sha + " --out " +
                 f.dir.file("m"),
             log) == 1);
    const std::string text = tandem_test::read_file(log);
    CHECK(text.find("disk error: cannot write " + f.dir.file("m.part")) != std::string::npos);
}

TEST_CASE("tandem pull: SIGINT stops it with status 130 and a .part that the same command resumes") {
    Fixture f;
    f.server.chunk_delay_ms = 20;  // ~1.3 s for the whole file
    const std::string out = f.dir.file("m.gguf"), log = f.dir.file("log");
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1), dup2(fd, 2);
        execl(TANDEM_BIN, TANDEM_BIN, "pull", f.server.url().c_str(), "--sha256", f.sha.c_str(), "--out", out.c_str(), (char*)nullptr);
        _exit(127);
    }
    for (int i = 0; i < 500 && size_of(out + ".part") < 50000; i++) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    kill(pid, SIGINT);
    int st = 0;
    waitpid(pid, &st, 0);
    REQUIRE(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 130);
    CHECK(tandem_test::read_file(log).find("interrupted") != std::string::npos);
    const int64_t kept = size_of(out + ".part");
    CHECK(kept >= 50000);
    CHECK(kept < (int64_t)f.body.size());
    f.server.chunk_delay_ms = 0;
    CHECK(sh(std::string(TANDEM_BIN) + " pull " + f.server.url() + " --sha256 " + f.sha + " --out " + out, log) == 0);
    CHECK(tandem_test::read_file(log).find("resumed at " + std::to_string(kept) + " bytes") != std::string::npos);
    CHECK(tandem_test::read_file(out) == f.body);
}

TEST_CASE("scripts/demo without ../shared: says which tandem pull commands to run, or pulls from TANDEM_*_URL") {
    Fixture f;
    const std::string log = f.dir.file("log"), data = f.dir.file("data");
    const std::string env = "TANDEM_SHARED_DIR=" + f.dir.file("none") + " TANDEM_DATA_DIR=" + data + " TANDEM_BIN=" + TANDEM_BIN;
    const std::string demo = std::string(TANDEM_SOURCE_DIR) + "/scripts/demo";
    CHECK(sh(env + " " + demo + " --fetch-only", log) == 1);
    std::string text = tandem_test::read_file(log);
    CHECK(text.find(std::string(TANDEM_BIN) + " pull URL/tandem-demo-cloud-q8_0.gguf --sha256 "
                    "e83533169c3eee4bb7f1200afa6805764879184ccab3ec24d3a318993f929ae9 --out " + data +
                    "/models/tandem-demo-cloud-q8_0.gguf") != std::string::npos);
    CHECK(text.find("tandem-demo-client") == std::string::npos);  // the client is in the repository
    CHECK(text.find("TANDEM_CORPUS_URL=URL/ungd.jsonl.xz") != std::string::npos);
    // the loopback server plays the file host (one body for every name, so its digest overrides)
    std::string vars;
    for (std::string v : {"TANDEM_CLOUD_MODEL", "TANDEM_CORPUS"})
        vars += " " + v + "_URL=" + f.server.url("/" + v) + " " + v + "_SHA256=" + f.sha;
    CHECK(sh(env + vars + " " + demo + " --fetch-only", log) == 0);
    text = tandem_test::read_file(log);
    CHECK(text.find("demo: data ready") != std::string::npos);
    CHECK(tandem_test::read_file(data + "/models/tandem-demo-cloud-q8_0.gguf") == f.body);
    CHECK(tandem_test::read_file(data + "/corpus/ungd.jsonl.xz") == f.body);
    CHECK(f.server.requests == 2);
    CHECK(sh(env + " " + demo + " --fetch-only", log) == 0);  // found in the data dir now: nothing pulled
    CHECK(f.server.requests == 2);
}
TEST_CASE("tandem pull: a planted .part symlink or FIFO exits 1 naming it; --max-bytes caps the size") {
    Fixture f;
    const std::string out = f.dir.file("m.gguf"), log = f.dir.file("log"), victim = f.dir.file("victim");
    const std::string pull = std::string(TANDEM_BIN) + " pull " + f.server.url() + " --sha256 " + f.sha + " --out " + out;
    tandem_test::write_file(victim, "precious");
    REQUIRE(symlink(victim.c_str(), (out + ".part").c_str()) == 0);
    CHECK(sh(pull, log) == 1);
    CHECK(tandem_test::read_file(log).find("refusing to write to " + out + ".part: it is a symbolic link") != std::string::npos);
    CHECK(tandem_test::read_file(victim) == "precious");
    REQUIRE(unlink((out + ".part").c_str()) == 0);
    REQUIRE(mkfifo((out + ".part").c_str(), 0644) == 0);
    CHECK(sh("timeout 20 " + pull, log) == 1);  // 124 would be a hang on the FIFO
    CHECK(tandem_test::read_file(log).find("it is a FIFO") != std::string::npos);
    REQUIRE(unlink((out + ".part").c_str()) == 0);
    CHECK(sh(pull + " --max-bytes 1000", log) == 1);
    CHECK(tandem_test::read_file(log).find("too_large error") != std::string::npos);
    CHECK(sh(pull + " --max-bytes 12x", log) == 2);
    CHECK(sh(pull + " --max-bytes 1048576", log) == 0);
    CHECK(tandem_test::read_file(out) == f.body);
}
#endif
