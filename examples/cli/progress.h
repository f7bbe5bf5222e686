// A progress bar on stderr that appears only once the work has taken more than a second.
#pragma once
#include <chrono>
#include <cstdio>
#include <string>

namespace tandem::cli {

class ProgressBar {
public:
    explicit ProgressBar(std::string label) : label_(std::move(label)), start_(std::chrono::steady_clock::now()) {}
    void update(double fraction) {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
        if (s < 1.0) return;
        const int width = 30, filled = (int)(fraction * width + 0.5);
        std::fprintf(stderr, "\r%s [%s%s] %3d%%", label_.c_str(), std::string((size_t)filled, '#').c_str(),
                     std::string((size_t)(width - filled), ' ').c_str(), (int)(fraction * 100 + 0.5));
        shown_ = true;
    }
    void done() {
        if (shown_) std::fprintf(stderr, "\n");
        shown_ = false;
    }

private:
    std::string label_;
    std::chrono::steady_clock::time_point start_;
    bool shown_ = false;
};

}  // namespace tandem::cli
