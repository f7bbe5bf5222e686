// A progress bar on stderr that appears only once the work has taken more than a second, and
// only when stderr is a terminal (a log file or pipe gets the other lines alone, not the
// carriage-return redraws).
#pragma once
#include <chrono>
#include <cstdio>
#include <string>

#include <unistd.h>

namespace tandem::cli {

class ProgressBar {
public:
    explicit ProgressBar(std::string label)
        : label_(std::move(label)), start_(std::chrono::steady_clock::now()), tty_(isatty(fileno(stderr)) == 1) {}
    void update(double fraction) {
        if (!tty_) return;
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
        if (s < 1.0) return;
        const int width = 30, filled = (int)(fraction * width + 0.5);
        std::fprintf(stderr, "\r%s [%s%s] %3d%%", label_.c_str(), std::string((size_t)filled, '#').c_str(),
                     std::string((size_t)(width - filled), ' ').c_str(), (int)(fraction * 100 + 0.5));
        shown_ = true;
    }
    // Erases the bar so that another stderr line can start at the left; the next update()
    // draws it again below that line.
    void interrupt() {
        if (shown_) std::fprintf(stderr, "\r\033[K");
        shown_ = false;
    }
    void done() {
        if (shown_) std::fprintf(stderr, "\n");
        shown_ = false;
    }

private:
    std::string label_;
    std::chrono::steady_clock::time_point start_;
    bool tty_;
    bool shown_ = false;
};

}  // namespace tandem::cli
