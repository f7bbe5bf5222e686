// download_file: libcurl easy transfer into PATH.part with Range resume, retries, SHA-256
// verification and an atomic rename (contract in tandem/download.h). The .part is opened once,
// without following symlinks, and every later step (size, truncation, hashing, the check
// before the rename) goes through that descriptor.
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
        case DownloadError::Kind::TooLarge: return "too_large";
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

std::string errno_text(int e) { return e == ENOSPC ? "disk full (no space left on device)" : std::strerror(e); }

// ---- the .part file ------------------------------------------------------------------------

// PATH.part, never through a symlink and only when it is a regular file (anyone who can write
// to the output directory could plant a link to another file there).
class PartFile {
public:
    explicit PartFile(std::string path) : path_(std::move(path)) {}
    ~PartFile() {
        if (fd_ >= 0) ::close(fd_);
    }
    const std::string& path() const { return path_; }
    bool is_open() const { return fd_ >= 0; }

    // Opens an existing .part (an earlier run's); nothing when there is none.
    void open_existing() {
        fd_ = ::open(path_.c_str(), O_RDWR | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (fd_ < 0 && errno == ENOENT) return;
        if (fd_ < 0 && errno == ELOOP) throw refused("is a symbolic link");
        if (fd_ < 0 && errno == EISDIR) throw refused("is a directory");
        if (fd_ < 0) throw DownloadError(Kind::Disk, "cannot open " + path_ + ": " + errno_text(errno));
        check_regular();
    }
    // Creates the .part; it must not exist (O_EXCL: not even as a dangling symlink).
    bool create(std::string* why) {
        fd_ = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd_ < 0) {
            *why = "cannot create " + path_ + ": " + errno_text(errno);
            return false;
        }
        return true;
    }
    int64_t size() const {
        struct stat st;
        return fd_ >= 0 && ::fstat(fd_, &st) == 0 ? (int64_t)st.st_size : 0;
    }
    // Appends all of p; false with errno set when the disk refuses.
    bool append(const char* p, size_t n) {
        while (n > 0) {
            const ssize_t w = ::write(fd_, p, n);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                if (w == 0) errno = EIO;
                return false;
            }
            p += w, n -= (size_t)w;
        }
        return true;
    }
    bool truncate() { return ::ftruncate(fd_, 0) == 0; }
    std::string sha256() const {
        Sha256 h;
        static thread_local char buf[1 << 16];
        for (off_t at = 0;;) {
            const ssize_t n = ::pread(fd_, buf, sizeof buf, at);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) throw DownloadError(Kind::Disk, "cannot read " + path_ + ": " + errno_text(errno));
            if (n == 0) break;
            h.update(buf, (size_t)n);
            at += n;
        }
        return h.hex_digest();
    }
    bool sync() { return ::fsync(fd_) == 0; }
    // The name still refers to the file this object has open (nobody swapped it meanwhile).
    bool same_as_name() const {
        struct stat a, b;
        return fd_ >= 0 && ::fstat(fd_, &a) == 0 && ::lstat(path_.c_str(), &b) == 0 && a.st_dev == b.st_dev &&
               a.st_ino == b.st_ino;
    }
    // Removes the .part (only if the name is still ours) and closes it.
    void remove() {
        if (same_as_name()) ::unlink(path_.c_str());
        ::close(fd_);
        fd_ = -1;
    }

private:
    DownloadError refused(const std::string& what) const {
        return DownloadError(Kind::Disk, "refusing to write to " + path_ + ": it " + what +
                                             ", not a regular file; remove it and run again");
    }
    void check_regular() {
        struct stat st;
        if (::fstat(fd_, &st) != 0) throw DownloadError(Kind::Disk, "cannot stat " + path_ + ": " + errno_text(errno));
        if (!S_ISREG(st.st_mode)) {
            ::close(fd_);
            fd_ = -1;
            throw refused(S_ISDIR(st.st_mode) ? "is a directory" : S_ISFIFO(st.st_mode) ? "is a FIFO" : "is a special file");
        }
        const int flags = ::fcntl(fd_, F_GETFL);
        if (flags >= 0) ::fcntl(fd_, F_SETFL, flags & ~O_NONBLOCK);
    }

    std::string path_;
    int fd_ = -1;
};

std::string dir_of(const std::string& path) {
    const size_t slash = path.rfind('/');
    return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

std::string mib(int64_t bytes) {
    char b[32];
    std::snprintf(b, sizeof b, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
    return b;
}

// ---- one HTTP transfer ---------------------------------------------------------------------

// State of one curl_easy_perform, shared with its callbacks.
struct Transfer {
    const DownloadParams* params = nullptr;
    CURL* curl = nullptr;
    PartFile* part = nullptr;
    int64_t offset = 0;           // bytes the .part held when the request was made
    int64_t written = 0;          // bytes appended by this transfer
    bool decided = false;         // the response status was looked at (first body byte)
    long status = 0;
    bool restarted = false;       // 200 to a Range request: the .part was truncated
    bool range_mismatch = false;  // 206 starting elsewhere than `offset`
    int write_errno = 0;
    std::string disk_message;     // why a write failed (space check or errno)
    std::string too_large;        // why the body was refused for its size (max_bytes, announced size)
    std::string error_body;       // the first bytes of an error response
    // From the headers of the last response (reset at every status line, i.e. per redirect):
    int64_t content_length = -1, range_start = -1, range_total = -1;
    Clock::time_point start, last_report;
    int64_t total = -1;           // whole-file size once known
    int64_t limit = -1;           // the .part may not grow past this (max_bytes, announced size)
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
            if (!t.part->truncate()) {
                t.write_errno = errno;
                t.disk_message = "cannot truncate " + t.part->path() + ": " + errno_text(errno);
                return false;
            }
            t.offset = 0;
            t.restarted = true;
        }
        t.total = t.content_length;
    } else {
        return true;  // an error status: the body is kept for the message, not written
    }
    const int64_t max_bytes = t.params->max_bytes;
    if (max_bytes > 0 && t.total > max_bytes) {
        t.too_large = t.params->url + " is " + std::to_string(t.total) + " bytes, more than the limit of " +
                      std::to_string(max_bytes) + " (--max-bytes)";
        return false;
    }
    t.limit = t.total >= 0 ? t.total : max_bytes > 0 ? max_bytes : -1;
    const std::string& part = t.part->path();
    struct statvfs vfs;
    if (t.total > 0 && ::statvfs(dir_of(part).c_str(), &vfs) == 0) {
        const int64_t free_bytes = (int64_t)vfs.f_bavail * (int64_t)vfs.f_frsize;
        if (free_bytes < t.total - t.offset) {
            t.write_errno = ENOSPC;
            t.disk_message = "disk full: " + part + " needs " + mib(t.total - t.offset) + " more, " + mib(free_bytes) +
                             " free on its file system";
            return false;
        }
    }
    // Created only now, when bytes are coming: a failed request leaves no empty .part.
    if (!t.part->is_open() && !t.part->create(&t.disk_message)) {
        t.write_errno = errno ? errno : EIO;
        return false;
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
    if (t.limit >= 0 && t.offset + t.written + (int64_t)bytes > t.limit) {
        t.too_large = t.total >= 0 ? t.params->url + " sent more than the " + std::to_string(t.total) + " bytes it announced"
                                   : t.params->url + " sent more than the limit of " + std::to_string(t.limit) +
                                         " bytes (--max-bytes)";
        return 0;
    }
    if (!t.part->append(p, bytes)) {
        t.write_errno = errno ? errno : EIO;
        t.disk_message = "cannot write " + t.part->path() + ": " + errno_text(t.write_errno);
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

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return (char)std::tolower(c); });
    return s;
}

// The .part's digest must match; then it is synced and renamed over out_path. A mismatch
// removes the .part (nothing of the download is left).
void verify_and_rename(const DownloadParams& p, PartFile& part, DownloadResult& r) {
    const std::string actual = part.sha256();
    const int64_t size = part.size();
    const std::string expected = lower(p.sha256);
    if (actual != expected) {
        part.remove();
        throw DownloadError(Kind::Checksum, "checksum mismatch for " + p.url + ": expected sha256 " + expected + ", got " + actual +
                                                " (" + std::to_string(size) + " bytes); removed " + part.path());
    }
    if (!part.sync()) throw DownloadError(Kind::Disk, "cannot sync " + part.path() + ": " + errno_text(errno));
    if (!part.same_as_name())
        throw DownloadError(Kind::Disk, part.path() + " was replaced or removed by someone else during the download; not renamed");
    if (std::rename(part.path().c_str(), p.out_path.c_str()) != 0)
        throw DownloadError(Kind::Disk, "cannot rename " + part.path() + " to " + p.out_path + ": " + std::strerror(errno));
    const int dfd = ::open(dir_of(p.out_path).c_str(), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) (void)::fsync(dfd), ::close(dfd);  // the rename itself survives a crash
    r.bytes = size;
    r.sha256 = actual;
}

void set_protocols(CURL* c) {
    // Only http and https, for the URL and for every redirect (libcurl would follow ftp:// too).
#if LIBCURL_VERSION_NUM >= 0x075500  // 7.85: the string forms
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
}

// One attempt: the request for what the .part lacks. Fills t; returns libcurl's code.
CURLcode transfer(const DownloadParams& p, Transfer& t, std::string& curl_message, std::string& redirect_to) {
    CURL* c = curl_easy_init();
    if (!c) throw DownloadError(Kind::Network, "libcurl could not start a transfer");
    t.curl = c;
    char curl_err[CURL_ERROR_SIZE] = "";
    const std::string range = std::to_string(t.offset) + "-";
    curl_easy_setopt(c, CURLOPT_URL, p.url.c_str());
    set_protocols(c);
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
    long redirects = 0;
    const char* last_url = nullptr;  // where the last redirect pointed (followed or refused)
    if (curl_easy_getinfo(c, CURLINFO_REDIRECT_COUNT, &redirects) == CURLE_OK && redirects > 0 &&
        curl_easy_getinfo(c, CURLINFO_EFFECTIVE_URL, &last_url) == CURLE_OK && last_url)
        redirect_to = last_url;
    curl_easy_cleanup(c);
    t.curl = nullptr;
    curl_message = curl_err[0] ? curl_err : curl_easy_strerror(rc);
    return rc;
}

// The attempts loop. Throws DownloadError; the caller cleans up the .part.
void download_into(const DownloadParams& p, PartFile& part, DownloadResult& r) {
    const std::string expected = lower(p.sha256);
    const auto start = Clock::now();
    for (int attempt = 0;; attempt++) {
        Transfer t;
        t.params = &p;
        t.part = &part;
        t.offset = part.size();
        t.start = start;
        if (attempt == 0) r.resumed_from = t.offset;
        std::string why, redirect_to;
        const CURLcode rc = transfer(p, t, why, redirect_to);
        r.attempts = attempt + 1;
        r.restarted = r.restarted || t.restarted;
        if (t.status == 200 || t.status == 206) report(t);
        const std::string kept = " (" + part.path() + " keeps " + std::to_string(part.size()) + " bytes: run again to resume)";
        if (rc == CURLE_ABORTED_BY_CALLBACK) throw DownloadError(Kind::Cancelled, "download of " + p.url + " interrupted" + kept);
        if (!t.too_large.empty()) throw DownloadError(Kind::TooLarge, t.too_large);
        if (t.write_errno) throw DownloadError(Kind::Disk, t.disk_message);
        if (rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_RESOLVE_PROXY)
            throw DownloadError(Kind::Dns, "cannot resolve the host of " + p.url + ": " + why);
        if (rc == CURLE_COULDNT_CONNECT)
            throw DownloadError(Kind::Refused, "cannot connect to " + p.url + " (connection refused or host unreachable): " + why);
        if (rc == CURLE_UNSUPPORTED_PROTOCOL && !redirect_to.empty())
            throw DownloadError(Kind::Http, "HTTP " + std::to_string(t.status) + " from " + p.url + " redirects to " + redirect_to +
                                                ": refused (only http:// and https:// are followed)", t.status);
        if (rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT)
            throw DownloadError(Kind::BadArgument, "bad URL " + p.url + ": " + why);
        bool again = false;
        if (t.range_mismatch || (rc == CURLE_OK && t.status == 416 && part.size() > 0 && part.sha256() != expected)) {
            // the server's idea of the file differs from the .part: start over
            if (!part.truncate()) throw DownloadError(Kind::Disk, "cannot truncate " + part.path() + ": " + errno_text(errno));
            r.restarted = true;
            again = true;
        } else if (rc == CURLE_OK && t.status == 416 && part.is_open()) {
            // nothing left to send and the .part is complete: verified below
        } else if (rc == CURLE_OK && t.status >= 300) {
            std::string body = t.error_body.substr(0, t.error_body.find('\n'));
            throw DownloadError(Kind::Http, "HTTP " + std::to_string(t.status) + " from " + p.url + (body.empty() ? "" : ": " + body) +
                                                (t.offset > 0 ? kept : ""), t.status);
        } else if (rc == CURLE_OK && t.total >= 0 && part.size() != t.total) {
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
    if (p.max_bytes < 0) throw DownloadError(Kind::BadArgument, "max_bytes must be >= 0");
    DownloadResult r;
    const std::string expected = lower(p.sha256);
    std::string present;
    try {
        if (file_size(p.out_path) >= 0) present = sha256_file(p.out_path);
    } catch (const std::exception&) {
        // unreadable: downloaded again, and the rename will say why if it fails
    }
    if (present == expected) {
        r.already_present = true;
        r.bytes = file_size(p.out_path);
        r.sha256 = expected;
        return r;
    }
    global_init();
    PartFile part(p.out_path + ".part");
    part.open_existing();  // refuses a symlink or anything but a regular file
    if (!part.is_open() && ::access(dir_of(part.path()).c_str(), W_OK) != 0)  // before any request
        throw DownloadError(Kind::Disk, "cannot create " + part.path() + ": " + errno_text(errno));
    try {
        download_into(p, part, r);
    } catch (const DownloadError& e) {
        // An empty .part is worth nothing to a resume; a refused body is worth nothing at all.
        if (part.is_open() && (part.size() == 0 || e.kind == Kind::TooLarge)) part.remove();
        throw;
    }
    return r;
}

}  // namespace tandem
