// Resumable, verified file download (what `tandem pull` runs; apps may call it to fetch a
// model from their own UI).
//
//   download_file({url, sha256, out_path, ...})
//     1. out_path already there with the expected SHA-256: nothing to do (already_present).
//     2. Bytes go to out_path + ".part". When that file exists (an earlier run was cut or
//        interrupted), the request asks for the rest with "Range: bytes=N-":
//          206 with Content-Range starting at N  -> appended;
//          200 (the server ignores Range)         -> the .part is truncated, a clean restart;
//          416 (nothing left to send)             -> the .part is checked as it is.
//     3. A transfer cut mid-body is retried `retries` times, each resuming from what arrived.
//     4. The whole .part is hashed; a match is fsync'ed and renamed atomically over out_path.
//        A mismatch removes the .part and throws (expected and actual digests in the message).
//
// The .part is opened with O_NOFOLLOW and must be a regular file: a symlink (or FIFO, or
// directory) planted at that name is refused, never written through. It is created only when
// the first body byte of a 200/206 arrives, so a failed request leaves no empty .part, and an
// empty .part is removed when the call fails. Redirects are followed to http:// and https://
// URLs only. The body may not pass the size the server announced (Content-Length, or the
// total of Content-Range) nor max_bytes when set; a response over either is refused
// (TooLarge) and its .part removed.
//
// Errors: DownloadError with a kind and a message naming the URL or file and the reason.
// Cancellation (params.cancel set, e.g. from a SIGINT handler) keeps the .part for a later
// resume. HTTP error statuses and network failures keep it too (it is still a valid prefix).
//
// Thread safety: independent calls may run on different threads (libcurl is initialised once).
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>

namespace tandem {

struct DownloadProgress {
    int64_t bytes_done = 0;     // bytes in the .part, including what an earlier run left
    int64_t bytes_total = -1;   // the whole file's size; -1 while the server has not said
    int64_t resumed_from = 0;   // bytes the .part held when this call started its transfer
    double seconds = 0;         // since this call started
    double bytes_per_s = 0;     // this call's transfer rate (resumed bytes not counted)
};

struct DownloadParams {
    std::string url;            // http:// or https://
    std::string sha256;         // expected digest, 64 hex digits (required)
    std::string out_path;       // final file; out_path + ".part" while downloading
    int retries = 3;            // extra attempts after a cut transfer (resuming each time)
    int64_t max_bytes = 0;      // the whole file's size limit; 0: only the announced size bounds it
    int connect_timeout_s = 30;
    int stall_timeout_s = 60;   // abort when under 1 byte/s for this long
    bool verify_tls = true;
    // Called from the downloading thread about every 100 ms (and once at the end); may be empty.
    std::function<void(const DownloadProgress&)> on_progress;
    const std::atomic<bool>* cancel = nullptr;  // set to stop within ~100 ms; may be null
};

struct DownloadResult {
    int64_t bytes = 0;           // size of out_path
    int64_t resumed_from = 0;    // bytes reused from an earlier .part (first attempt)
    int attempts = 0;            // HTTP transfers made (0 when already present)
    bool restarted = false;      // the server ignored Range: the .part was started over
    bool already_present = false;
    std::string sha256;          // lowercase hex of out_path
};

class DownloadError : public std::runtime_error {
public:
    enum class Kind {
        BadArgument,   // bad URL, digest or path
        Http,          // the server answered with an error status (http_status says which)
        Dns,           // the host name does not resolve
        Refused,       // the connection was refused (nothing listens there)
        Network,       // timeout, connection cut, TLS failure, ... after the retries
        Disk,          // cannot create/write/rename the file (disk full, permissions)
        Checksum,      // the bytes do not have the expected SHA-256 (the .part was removed)
        Cancelled,     // params.cancel was set (the .part was kept)
        TooLarge,      // bigger than max_bytes, or more bytes than announced (the .part was removed)
    };
    DownloadError(Kind k, const std::string& msg, long status = 0) : std::runtime_error(msg), kind(k), http_status(status) {}
    Kind kind;
    long http_status;
};
const char* download_error_kind_name(DownloadError::Kind k);

// Downloads params.url to params.out_path as described above. Returns what happened; throws
// DownloadError (never anything else for I/O or network problems).
DownloadResult download_file(const DownloadParams& params);

}  // namespace tandem
