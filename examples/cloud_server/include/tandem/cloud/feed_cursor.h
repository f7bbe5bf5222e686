// Change-feed cursors. A cursor names the last feed entry a client has, in its tenant's feed
// of one database: "<epoch>-<seq>-<tag>" (the database's epoch, the entry's position, its
// random tag; "<epoch>-0" before the first entry). Clients treat it as opaque.
//
// A cursor is honoured only when it names an entry this feed has: same epoch, and the entry
// at seq carries the same tag. Anything else well-formed (a database reset or restored from a
// backup, another database, another tenant's cursor, a decimal cursor of the feed before
// epochs) is "from another epoch": the page starts from the beginning and says reset. A
// malformed cursor is a 400. "" and "0" mean "from the beginning".
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tandem/cloud/server_db.h"

namespace tandem::cloud {

struct FeedCursor {
    std::string epoch;  // "" for "", "0" and decimal cursors of the feed before epochs
    int64_t seq = 0;
    std::string tag;
};

std::string format_cursor(const std::string& epoch, int64_t seq, const std::string& tag);
// nullopt when `since` is malformed.
std::optional<FeedCursor> parse_cursor(std::string_view since);

// Where a page of the tenant's feed starts: after `after`; reset when the cursor belongs to
// another epoch (the client must drop what it has and take the feed from the start).
struct FeedStart {
    int64_t after = 0;
    bool reset = false;
};
FeedStart resolve_cursor(const FeedCursor& c, ServerDb& db, const std::string& tenant);

}  // namespace tandem::cloud
