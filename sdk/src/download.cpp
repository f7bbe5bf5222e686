// download_file: libcurl easy transfer into PATH.part with Range resume, retries, SHA-256
// verification and an atomic rename (contract in tandem/download.h).
#include "tandem/download.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include "tandem/sha256.h"

namespace tandem {

const char* download_error_kind_name(DownloadError::Kind k) {
    switch (k) {
        case DownloadError::Kind::BadArgument: return "bad_argument";
        case DownloadError::Kind::Http: return "http";
        case DownloadError::Kind::Dns: return "dns";
        case DownloadError::Kind::Refused: return "refused";
        case DownloadError::Kind::Network: return "network";
        case DownloadError::Kind::Disk: return "disk";
        case DownloadError::Kind::Checksum: return "checksum";
        case DownloadError::Kind::Cancelled: return "cancelled";
    }
    return "?";
}

namespace {

using Clock = std::chrono::steady_clock;
using Kind = DownloadError::Kind;

int64_t file_size(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) ? (int64_t)st.st_size : -1;
}

std::string dir_of(const std::string& path) {
    const size_t slash = path.rfind('/');
    return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

std::string mib(int64_t bytes) {
    char b[32];
    std::snprintf(b, sizeof b, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
    return b;
}

std::string errno_text(int e) { return e == ENOSPC ? "disk full (no space left on device)" : std::strerror(e); }

// ---- one HTTP transfer ---------------------------------------------------------------------

// State of one curl_easy_perform, shared with its callbacks.
struct Transfer {
    const DownloadParams* params = nullptr;
    CURL* curl = nullptr;
    FILE* f = nullptr;
    std::string part;
    int64_t offset = 0;           // bytes the .part held when the request was made
    int64_t written = 0;          // bytes appended by this transfer
    bool decided = false;         // the response status was looked at (first body byte)
    long status = 0;
    bool restarted = false;       // 200 to a Range request: the .part was truncated
    bool range_mismatch = false;  // 206 starting elsewhere than `offset`
    int write_errno = 0;
    std::string disk_message;     // why a write failed (space check or errno)
    std::string error_body;       // the first bytes of an error response
    // From the headers of the last response (reset at every status line, i.e. per redirect):
    int64_t content_length = -1, range_start = -1, range_total = -1;
    Clock::time_point start, last_report;
    int64_t total = -1;           // whole-file size once known
};

// Called by libcurl per header line, for every response in a redirect chain.
size_t on_header(char* p, size_t size, size_t n, void* user) {
    Transfer& t = *static_cast<Transfer*>(user);
    const std::string line(p, size * n);
    if (line.rfind("HTTP/", 0) == 0) {
        t.content_length = t.range_start = t.range_total = -1;
        return size * n;
    }
    std::string lower(line);
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return (char)std::tolower(c); });
    long long a = 0, b = 0, total = 0;
    if (std::sscanf(lower.c_str(), "content-length: %lld", &a) == 1) t.content_length = a;
    if (std::sscanf(lower.c_str(), "content-range: bytes %lld-%lld/%lld", &a, &b, &total) == 3)
        t.range_start = a, t.range_total = total;
    return size * n;
}

// The first body byte decides what the response means for the .part (see download.h).
bool decide(Transfer& t) {
    curl_easy_getinfo(t.curl, CURLINFO_RESPONSE_CODE, &t.status);
    t.decided = true;
    if (t.status == 206) {
        if (t.range_start != t.offset) {
            t.range_mismatch = true;
            return false;
        }
        t.total = t.range_total;
    } else if (t.status == 200) {
        if (t.offset > 0) {  // the server ignored Range: start the file over
            if (::ftruncate(fileno(t.f), 0) != 0) {
                t.write_errno = errno;
                t.disk_message = "cannot truncate " + t.part + ": " + errno_text(errno);
                return false;
            }
            t.offset = 0;
            t.restarted = true;
        }
        t.total = t.content_length;
    } else {
        return true;  // an error status: the body is kept for the message, not written
    }
    struct statvfs vfs;
    if (t.total > 0 && ::statvfs(dir_of(t.part).c_str(), &vfs) == 0) {
        const int64_t free_bytes = (int64_t)vfs.f_bavail * (int64_t)vfs.f_frsize;
        if (free_bytes < t.total - t.offset) {
            t.write_errno = ENOSPC;
            t.disk_message = "disk full: " + t.part + " needs " + mib(t.total - t.offset) + " more, " + mib(free_bytes) +
                             " free on its file system";
            return false;
        }
    }
    return true;
}

size_t on_body(char* p, size_t size, size_t n, void* user) {
    Transfer& t = *static_cast<Transfer*>(user);
    const size_t bytes = size * n;
    if (!t.decided && !decide(t)) return 0;  // 0: libcurl stops with CURLE_WRITE_ERROR
    if (t.status != 200 && t.status != 206) {
        if (t.error_body.size() < 300) t.error_body.append(p, std::min(bytes, 300 - t.error_body.size()));
        return bytes;
    }
    if (std::fwrite(p, 1, bytes, t.f) != bytes) {
        t.write_errno = errno ? errno : EIO;
        t.disk_message = "cannot write " + t.part + ": " + errno_text(t.write_errno);
        return 0;
    }
    t.written += (int64_t)bytes;
    return bytes;
}

void report(Transfer& t) {
    if (!t.params->on_progress) return;
    DownloadProgress pr;
    pr.bytes_done = t.offset + t.written;
    pr.bytes_total = t.total;
    pr.resumed_from = t.offset;
    pr.seconds = std::chrono::duration<double>(Clock::now() - t.start).count();
    pr.bytes_per_s = pr.seconds > 0 ? (double)t.written / pr.seconds : 0;
    t.params->on_progress(pr);
}

// libcurl's progress hook (about every second, and whenever data moves): cancellation and
// the caller's progress callback, at most every 100 ms.
int on_xfer(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    Transfer& t = *static_cast<Transfer*>(user);
    if (t.params->cancel && t.params->cancel->load()) return 1;
    const auto now = Clock::now();
    if (now - t.last_report >= std::chrono::milliseconds(100)) {
        t.last_report = now;
        report(t);
    }
    return 0;
}

void global_init() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// ---- the attempts loop -----------------------------------------------------------------------

bool retryable(CURLcode rc) {
    switch (rc) {
        case CURLE_PARTIAL_FILE: case CURLE_RECV_ERROR: case CURLE_SEND_ERROR: case CURLE_OPERATION_TIMEDOUT:
        case CURLE_GOT_NOTHING: case CURLE_HTTP2: case CURLE_HTTP2_STREAM:
            return true;
        default:
            return false;
    }
}

void verify_and_rename(const DownloadParams& p, const std::string& part, DownloadResult& r) {
    std::string actual;
    try {
        actual = sha256_file(part);
    } catch (const std::exception& e) {
        throw DownloadError(Kind::Disk, e.what());
    }
    const int64_t size = file_size(part);
    std::string expected = p.sha256;
    std::transform(expected.begin(), expected.end(), expected.begin(), [](unsigned char c) { return (char)std::tolower(c); });
    if (actual != expected) {
        ::unlink(part.c_str());
        throw DownloadError(Kind::Checksum, "checksum mismatch for " + p.url + ": expected sha256 " + expected + ", got " + actual +
                                                " (" + std::to_string(size) + " bytes); removed " + part);
    }
    const int fd = ::open(part.c_str(), O_RDONLY);
    if (fd < 0 || ::fsync(fd) != 0) {
        const int e = errno;
        if (fd >= 0) ::close(fd);
        throw DownloadError(Kind::Disk, "cannot sync " + part + ": " + errno_text(e));
    }
    ::close(fd);
    if (std::rename(part.c_str(), p.out_path.c_str()) != 0)
        throw DownloadError(Kind::Disk, "cannot rename " + part + " to " + p.out_path + ": " + std::strerror(errno));
    const int dfd = ::open(dir_of(p.out_path).c_str(), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) (void)::fsync(dfd), ::close(dfd);  // the rename itself survives a crash
    r.bytes = size;
    r.sha256 = actual;
}

}  // namespace

DownloadResult download_file(const DownloadParams& p) {
    if (p.url.rfind("http://", 0) != 0 && p.url.rfind("https://", 0) != 0)
        throw DownloadError(Kind::BadArgument, "URL must start with http:// or https://, got '" + p.url + "'");
    if (!is_sha256_hex(p.sha256))
        throw DownloadError(Kind::BadArgument, "--sha256 needs 64 hex digits, got '" + p.sha256 + "'");
    if (p.out_path.empty() || p.out_path.back() == '/')
        throw DownloadError(Kind::BadArgument, "output path '" + p.out_path + "' is not a file name");
    if (p.retries < 0) throw DownloadError(Kind::BadArgument, "retries must be >= 0");
    DownloadResult r;
    std::string expected = p.sha256;
    std::transform(expected.begin(), expected.end(), expected.begin(), [](unsigned char c) { return (char)std::tolower(c); });
    auto digest_or_empty = [](const std::string& path) {
        try {
            return file_size(path) >= 0 ? sha256_file(path) : std::string();
        } catch (const std::exception&) {
            return std::string();  // unreadable: downloaded again, and the rename will say why if it fails
        }
    };
    if (digest_or_empty(p.out_path) == expected) {
        r.already_present = true;
        r.bytes = file_size(p.out_path);
        r.sha256 = expected;
        return r;
    }
    global_init();
    const std::string part = p.out_path + ".part";
    const auto start = Clock::now();
    for (int attempt = 0;; attempt++) {
        Transfer t;
        t.params = &p;
        t.part = part;
        t.offset = std::max<int64_t>(0, file_size(part));
        t.start = start;
        if (attempt == 0) r.resumed_from = t.offset;
        t.f = std::fopen(part.c_str(), "ab");
        if (!t.f) throw DownloadError(Kind::Disk, "cannot create " + part + ": " + errno_text(errno));
        CURL* c = curl_easy_init();
        if (!c) {
            std::fclose(t.f);
            throw DownloadError(Kind::Network, "libcurl could not start a transfer");
        }
        t.curl = c;
        char curl_err[CURL_ERROR_SIZE] = "";
        const std::string range = std::to_string(t.offset) + "-";
        curl_easy_setopt(c, CURLOPT_URL, p.url.c_str());
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)p.connect_timeout_s);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)p.stall_timeout_s);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, p.verify_tls ? 1L : 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, p.verify_tls ? 2L : 0L);
        curl_easy_setopt(c, CURLOPT_USERAGENT, "tandem-pull/1");
        curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "identity");
        if (t.offset > 0) curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xfer);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        const CURLcode rc = curl_easy_perform(c);
        if (!t.decided) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &t.status);  // empty bodies (416, 404 without body)
        curl_easy_cleanup(c);
        if (std::fclose(t.f) != 0 && t.write_errno == 0 && t.written > 0) {
            t.write_errno = errno;
            t.disk_message = "cannot write " + part + ": " + errno_text(errno);
        }
        r.attempts = attempt + 1;
        r.restarted = r.restarted || t.restarted;
        if (t.status == 200 || t.status == 206) report(t);
        const std::string kept = " (" + part + " keeps " + std::to_string(std::max<int64_t>(0, file_size(part))) +
                                 " bytes: run again to resume)";
        const std::string why = curl_err[0] ? curl_err : curl_easy_strerror(rc);
        if (rc == CURLE_ABORTED_BY_CALLBACK) throw DownloadError(Kind::Cancelled, "download of " + p.url + " interrupted" + kept);
        if (t.write_errno) throw DownloadError(Kind::Disk, t.disk_message);
        if (rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_RESOLVE_PROXY)
            throw DownloadError(Kind::Dns, "cannot resolve the host of " + p.url + ": " + why);
        if (rc == CURLE_COULDNT_CONNECT)
            throw DownloadError(Kind::Refused, "cannot connect to " + p.url + " (connection refused or host unreachable): " + why);
        if (rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT)
            throw DownloadError(Kind::BadArgument, "bad URL " + p.url + ": " + why);
        bool again = false;
        if (t.range_mismatch || (rc == CURLE_OK && t.status == 416 && file_size(part) > 0 && digest_or_empty(part) != expected)) {
            // the server's idea of the file differs from the .part: start over
            if (::truncate(part.c_str(), 0) != 0)
                throw DownloadError(Kind::Disk, "cannot truncate " + part + ": " + errno_text(errno));
            r.restarted = true;
            again = true;
        } else if (rc == CURLE_OK && t.status == 416) {
            // nothing left to send and the .part is complete: verified below
        } else if (rc == CURLE_OK && t.status >= 300) {
            std::string body = t.error_body.substr(0, t.error_body.find('\n'));
            throw DownloadError(Kind::Http, "HTTP " + std::to_string(t.status) + " from " + p.url + (body.empty() ? "" : ": " + body) +
                                                (t.offset > 0 ? kept : ""), t.status);
        } else if (rc == CURLE_OK && t.total >= 0 && file_size(part) != t.total) {
            again = true;  // the body ended early without the connection noticing
        } else if (rc != CURLE_OK) {
            if (!retryable(rc)) throw DownloadError(Kind::Network, "download of " + p.url + " failed: " + why + kept);
            again = true;
        }
        if (!again) break;
        if (attempt >= p.retries)
            throw DownloadError(Kind::Network, "download of " + p.url + " failed after " + std::to_string(attempt + 1) +
                                                   " attempts: " + (rc == CURLE_OK ? "transfer ended early" : why) + kept);
        for (int i = 0; i < 5 * (attempt + 1); i++) {  // back off 0.1 s per attempt, cancellable
            if (p.cancel && p.cancel->load()) throw DownloadError(Kind::Cancelled, "download of " + p.url + " interrupted" + kept);
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }
    verify_and_rename(p, part, r);
    return r;
}

}  // namespace tandem
