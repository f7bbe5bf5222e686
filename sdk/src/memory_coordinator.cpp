// When to ask for memory (see memory_coordinator.h).
#include "memory_coordinator.h"

#include <algorithm>

namespace tandem {

int MemoryCoordinator::edit_distance(const std::vector<std::string>& a, const std::vector<std::string>& b) {
    std::vector<int> prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); j++) prev[j] = (int)j;
    for (size_t i = 1; i <= a.size(); i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= b.size(); j++)
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

bool MemoryCoordinator::should_request(const DocumentWindow& window) {
    auto now = window.request_words();
    if ((int)now.size() < std::min(threshold_, 8)) return false;  // too little text to be about anything
    last_distance_ = have_last_ ? edit_distance(last_, now) : (int)now.size();
    if (have_last_ && last_distance_ < threshold_) return false;
    last_ = std::move(now);
    have_last_ = true;
    return true;
}

}  // namespace tandem
