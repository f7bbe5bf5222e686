// Feed cursors: format, parse, resolve (feed_cursor.h).
#include "tandem/cloud/feed_cursor.h"

namespace tandem::cloud {

static bool all_of(std::string_view s, const char* set, size_t min, size_t max) {
    return s.size() >= min && s.size() <= max && s.find_first_not_of(set) == std::string_view::npos;
}

std::string format_cursor(const std::string& epoch, int64_t seq, const std::string& tag) {
    std::string c = epoch + "-" + std::to_string(seq);
    if (seq > 0) c += "-" + tag;
    return c;
}

std::optional<FeedCursor> parse_cursor(std::string_view since) {
    static const char* digits = "0123456789";
    static const char* hex = "0123456789abcdef";
    FeedCursor c;
    if (since.empty()) return c;
    if (all_of(since, digits, 1, 18)) {  // the decimal cursors of the feed before epochs
        c.seq = std::stoll(std::string(since));
        return c;
    }
    const size_t a = since.find('-');
    if (a == std::string_view::npos) return std::nullopt;
    const size_t b = since.find('-', a + 1);
    const std::string_view epoch = since.substr(0, a);
    const std::string_view seq = since.substr(a + 1, b == std::string_view::npos ? std::string_view::npos : b - a - 1);
    const std::string_view tag = b == std::string_view::npos ? std::string_view() : since.substr(b + 1);
    if (!all_of(epoch, hex, 1, 64) || !all_of(seq, digits, 1, 18) || !all_of(tag, hex, 0, 32)) return std::nullopt;
    c.epoch = std::string(epoch);
    c.seq = std::stoll(std::string(seq));
    c.tag = std::string(tag);
    if ((c.seq == 0) != (b == std::string_view::npos)) return std::nullopt;  // a tag exactly when seq > 0
    return c;
}

FeedStart resolve_cursor(const FeedCursor& c, ServerDb& db, const std::string& tenant) {
    if (c.seq == 0 && c.epoch.empty()) return {0, false};  // "" or "0": from the beginning
    if (c.epoch != db.epoch()) return {0, true};
    if (c.seq == 0) return {0, false};
    const std::optional<std::string> tag = db.entry_tag(tenant, c.seq);
    if (!tag || *tag != c.tag) return {0, true};
    return {c.seq, false};
}

}  // namespace tandem::cloud
