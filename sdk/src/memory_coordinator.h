// Decides when the text near the cursor has changed enough to ask the cloud for new memory
// (internal to the SDK). Distance = word-level Levenshtein distance between the window's
// request words (tandem/document_window.h) now and at the last request; a request is due when
// it reaches `threshold` (or on the first window with enough words).
#pragma once
#include <string>
#include <vector>

#include "tandem/document_window.h"

namespace tandem {

class MemoryCoordinator {
public:
    explicit MemoryCoordinator(int threshold) : threshold_(threshold) {}

    // Returns true (and remembers this window's words) when a memory request should go out
    // now; its context is window.request_context().
    bool should_request(const DocumentWindow& window);
    int last_distance() const { return last_distance_; }

    static int edit_distance(const std::vector<std::string>& a, const std::vector<std::string>& b);

private:
    int threshold_;
    bool have_last_ = false;
    std::vector<std::string> last_;
    int last_distance_ = 0;
};

}  // namespace tandem
