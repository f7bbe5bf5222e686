// `tandem pull URL --sha256 HEX [--out PATH] [--max-bytes N]`: downloads a model with resume,
// SHA-256 verification and a progress bar (the work is tandem::download_file,
// sdk/src/download.cpp). --max-bytes refuses a file bigger than N bytes; without it the size
// the server announces is the limit.
//
// Progress goes to stderr: a redrawn bar when stderr is a terminal, otherwise one plain line
// every 5 seconds. Ctrl-C (or SIGTERM) stops the transfer and keeps PATH.part; running the
// same command again resumes it. Exit status: 0 done (or already present), 1 error,
// 2 bad command line, 130 interrupted.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "commands.h"
#include "tandem/download.h"

namespace tandem::cli {

namespace {

std::atomic<bool> g_interrupted{false};
extern "C" void on_signal(int) { g_interrupted = true; }

std::string human_bytes(double b) {
    const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) b /= 1024, u++;
    char s[32];
    std::snprintf(s, sizeof s, u == 0 ? "%.0f %s" : "%.1f %s", b, unit[u]);
    return s;
}

std::string human_time(double s) {
    if (!(s >= 0) || s > 99 * 3600) return "--:--";
    const long t = (long)(s + 0.5);
    char b[32];
    if (t >= 3600) std::snprintf(b, sizeof b, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else std::snprintf(b, sizeof b, "%ld:%02ld", t / 60, t % 60);
    return b;
}

// "12.3 MiB / 120.0 MiB  10%  5.2 MiB/s  ETA 0:21" (size and ETA only when the total is known)
std::string progress_text(const DownloadProgress& p) {
    std::string s = human_bytes((double)p.bytes_done);
    const double rate = p.bytes_per_s;
    if (p.bytes_total > 0) {
        char pct[16];
        std::snprintf(pct, sizeof pct, "%3d%%", (int)(100.0 * (double)p.bytes_done / (double)p.bytes_total));
        s += " / " + human_bytes((double)p.bytes_total) + "  " + pct;
    }
    s += "  " + human_bytes(rate) + "/s";
    if (p.bytes_total > 0) s += "  ETA " + human_time(rate > 0 ? (double)(p.bytes_total - p.bytes_done) / rate : -1);
    return s;
}

int64_t parse_bytes(const std::string& s, const std::string& option) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    if (s.empty() || *end || errno || v < 1) throw UsageError{option + " must be a number of bytes >= 1, got '" + s + "'"};
    return v;
}

std::string default_out(const std::string& url) {
    std::string path = url.substr(0, url.find_first_of("?#"));
    const size_t scheme = path.find("://");
    if (scheme != std::string::npos) path = path.substr(scheme + 3);
    const size_t slash = path.rfind('/');
    return slash == std::string::npos ? "" : path.substr(slash + 1);
}

}  // namespace

std::string help_pull() {
    char buf[1024];
    std::snprintf(buf, sizeof buf,
                  "usage: tandem pull URL --sha256 HEX [options]\n"
                  "Downloads URL with resume and SHA-256 verification (a model, the corpus). Ctrl-C keeps\n"
                  "PATH.part; the same command again resumes it.\n\n"
                  "      --sha256 HEX     the digest the file must have (required)\n"
                  "  -o, --out PATH       where to write (default: the last part of the URL's path)\n"
                  "      --retries N      extra attempts after a cut transfer, each resuming (default: %d)\n"
                  "      --insecure       do not verify the server's TLS certificate (default: verify)\n"
                  "  -q, --quiet          no progress on stderr (default: progress)\n"
                  "  -h, --help           this text\n",
                  DownloadParams{}.retries);
    return buf;
}

int cmd_pull(const Args& args) {
    DownloadParams p;
    bool quiet = false;
    for (size_t i = 0; i < args.size(); i++) {
        const std::string& a = args[i];
        if (a == "--sha256") p.sha256 = flag_value(args, i);
        else if (a == "--out" || a == "-o") p.out_path = flag_value(args, i);
        else if (a == "--retries") p.retries = parse_int(flag_value(args, i), a);
        else if (a == "--max-bytes") p.max_bytes = parse_bytes(flag_value(args, i), a);
        else if (a == "--insecure") p.verify_tls = false;
        else if (a == "--quiet" || a == "-q") quiet = true;
        else if (!a.empty() && a[0] == '-') unknown_argument(a);
        else if (p.url.empty()) p.url = a;
        else throw UsageError{"one URL only, got '" + p.url + "' and '" + a + "'"};
    }
    if (p.url.empty()) throw UsageError{"a URL is required"};
    if (p.sha256.empty()) throw UsageError{"--sha256 HEX is required (the digest the file must have)"};
    if (p.out_path.empty()) p.out_path = default_out(p.url);
    if (p.out_path.empty()) throw UsageError{"cannot name the file after the URL '" + p.url + "': give --out PATH"};
    if (p.retries < 0) throw UsageError{"--retries must be >= 0"};

    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    signal(SIGXFSZ, SIG_IGN);  // a file size limit becomes a write error with a message, not a kill
    p.cancel = &g_interrupted;

    const bool tty = isatty(2) && !quiet;
    auto last_line = std::chrono::steady_clock::now();
    bool drawn = false;
    p.on_progress = [&](const DownloadProgress& pr) {
        if (quiet) return;
        if (tty) {
            std::fprintf(stderr, "\r\033[K%s", progress_text(pr).c_str());
            drawn = true;
        } else if (std::chrono::steady_clock::now() - last_line >= std::chrono::seconds(5)) {
            last_line = std::chrono::steady_clock::now();
            std::fprintf(stderr, "pull: %s\n", progress_text(pr).c_str());
        }
    };
    auto end_bar = [&] {
        if (drawn) std::fprintf(stderr, "\n");
        drawn = false;
    };
    if (!quiet) std::fprintf(stderr, "pull: %s -> %s\n", p.url.c_str(), p.out_path.c_str());
    try {
        const DownloadResult r = download_file(p);
        end_bar();
        if (r.already_present) {
            std::printf("%s is already there (%lld bytes, sha256 %s)\n", p.out_path.c_str(), (long long)r.bytes, r.sha256.c_str());
            return 0;
        }
        std::string how;
        if (r.resumed_from > 0 && !r.restarted) how = ", resumed at " + std::to_string(r.resumed_from) + " bytes";
        if (r.restarted) how = ", restarted from the beginning (the server ignored the range request)";
        if (r.attempts > 1) how += ", " + std::to_string(r.attempts) + " attempts";
        std::printf("%s: %lld bytes, sha256 %s verified%s\n", p.out_path.c_str(), (long long)r.bytes, r.sha256.c_str(), how.c_str());
        return 0;
    } catch (const DownloadError& e) {
        end_bar();
        std::fprintf(stderr, "tandem pull: %s error: %s\n", download_error_kind_name(e.kind), e.what());
        return e.kind == DownloadError::Kind::Cancelled ? 130 : e.kind == DownloadError::Kind::BadArgument ? 2 : 1;
    }
}

}  // namespace tandem::cli
