// Decides when the text near the cursor has changed enough to ask the cloud for new memory
// (internal to the SDK). Distance = word-level Levenshtein distance between the last
// `window_words` words now and at the last request; a request is due when it reaches
// `threshold` (or on the first window with enough words).
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace tandem {

class MemoryCoordinator {
public:
    MemoryCoordinator(int threshold, int window_words) : threshold_(threshold), window_words_(window_words) {}

    // Returns true (and remembers this window) when a memory request should go out now.
    bool should_request(std::string_view window);
    // The context to send: the tail of the window the distance is measured on.
    std::string context_of(std::string_view window) const;
    int last_distance() const { return last_distance_; }

    static std::vector<std::string> words(std::string_view text, size_t max_words);
    static int edit_distance(const std::vector<std::string>& a, const std::vector<std::string>& b);

private:
    int threshold_, window_words_;
    bool have_last_ = false;
    std::vector<std::string> last_;
    int last_distance_ = 0;
};

}  // namespace tandem
