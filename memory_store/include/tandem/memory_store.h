// memory_store: the client's SQLite copy of the cloud's memory notes, its sync cursor and the
// outbox of memory requests (HybridRAG; the sync's wire format is docs/protocol.md).
//
// Schema (version in PRAGMA user_version; forward migrations only, one transaction per step):
//
//   table / index        column          type     notes
//   memory_items         item_rowid      INTEGER  PRIMARY KEY: stable rowid the FTS index keys on
//                        id              TEXT     UNIQUE NOT NULL: the cloud's item id
//                        request_id      TEXT     the memory request that produced it
//                        text            TEXT     the note
//                        doc_id, title   TEXT     its source document
//                        created_at      INTEGER  cloud time, Unix milliseconds
//                        last_used_at    INTEGER  local time of apply or last retrieval (LRU)
//                        document        TEXT     the app's document the note was made for ('')
//   memory_fts           text, title     FTS5     external content = memory_items, kept in step
//                                                 by triggers; tokenizer porter unicode61
//   sync_state (1 row)   cursor          TEXT     opaque change-feed cursor ('' = from start)
//                        updated_at      INTEGER
//                        epoch           TEXT     the feed's epoch the cursor belongs to ('')
//   outbox               request_id      TEXT     PRIMARY KEY (the idempotency key)
//                        context         TEXT     the text window sent to the cloud
//                        attempts        INTEGER  failed sends so far
//                        next_attempt_at INTEGER  Unix ms; due when <= now
//                        state           TEXT     'pending' | 'sent' | 'dead'
//                        created_at      INTEGER
//                        document        TEXT     the app's document id sent with it ('')
//   store_stats (1 row)  n_items, n_bytes INTEGER item count and sum of text bytes (triggers)
//   idx_items_lru        (last_used_at, item_rowid)   eviction order
//   idx_items_document   (document)                   retrieval's preferred document
//
// Versions: 1 = items, FTS, sync_state; 2 = outbox; 3 = store_stats + LRU index (bounded store);
// 4 = documents (items, outbox) and the feed epoch.
//
// Why an external-content FTS5 table (not contentless): the text is stored once (in
// memory_items), and deletes (tombstones, eviction) must remove index entries; a contentless
// table needs the original values to delete (contentless_delete arrives only in SQLite 3.43),
// the triggers hand them over from memory_items. item_rowid is an explicit INTEGER PRIMARY KEY
// because VACUUM may renumber implicit rowids, which would silently break the index.
//
// Errors: every method throws MemoryStoreError; its code() says corrupt / busy / read-only /
// ..., and its message names the database path, the operation and SQLite's reason. Nothing
// here aborts on bad files or bad input.
//
// Thread-safety: one MemoryStore may be shared by threads (calls are serialized by a mutex).
// Several MemoryStore objects (or processes) may open the same file: WAL mode lets readers run
// beside one writer, and busy_timeout_ms bounds the wait for a writer's lock.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tandem {

// ---- errors ----------------------------------------------------------------------------

enum class MemoryStoreErrc {
    open_failed,       // the file cannot be opened or created (SQLITE_CANTOPEN, ...)
    corrupt,           // not a database, or a damaged one (SQLITE_CORRUPT, SQLITE_NOTADB)
    busy,              // another connection holds the lock past busy_timeout_ms
    read_only,         // the file (or its directory) cannot be written
    schema_too_new,    // user_version is newer than this code knows
    io,                // disk I/O error or disk full
    invalid_argument,  // bad input to a method (empty id, unknown request, ...)
    internal,          // any other SQLite error
};
const char* memory_store_errc_name(MemoryStoreErrc c);  // "corrupt", "busy", ...

class MemoryStoreError : public std::runtime_error {
public:
    MemoryStoreError(MemoryStoreErrc code, std::string path, const std::string& message)
        : std::runtime_error(message), code_(code), path_(std::move(path)) {}
    MemoryStoreErrc code() const { return code_; }
    const std::string& path() const { return path_; }

private:
    MemoryStoreErrc code_;
    std::string path_;
};

// ---- data ------------------------------------------------------------------------------

struct MemoryItem {
    std::string id;
    std::string request_id;
    std::string text;
    std::string doc_id;        // source{doc_id}
    std::string title;         // source{title}
    int64_t created_at = 0;    // Unix ms (cloud clock)
    int64_t last_used_at = 0;  // Unix ms (local clock); ignored on apply
    std::string document;      // the app's document the note was made for ("" = none)
};

// One entry of a change-feed page: an item, or a tombstone retracting an earlier id.
struct MemoryChange {
    bool deleted = false;  // true: tombstone, only item.id is meaningful
    MemoryItem item;
};

enum class OutboxState { pending, sent, dead };
const char* outbox_state_name(OutboxState s);  // "pending" | "sent" | "dead"

struct OutboxRequest {
    std::string request_id;
    std::string context;
    int attempts = 0;
    int64_t next_attempt_at = 0;  // Unix ms
    OutboxState state = OutboxState::pending;
    std::string document;         // the app's document id ("" = none)
};

struct MemoryStoreParams {
    std::string path;                     // database file; created when missing
    int64_t max_items = 20000;            // cap on items (LRU eviction beyond it); > 0
    int64_t max_bytes = 32 << 20;         // cap on the sum of text bytes; > 0
    int busy_timeout_ms = 2000;           // wait for another writer's lock, then busy error
    // For tests and tools: open at this schema version instead of the newest (0 = newest).
    // Methods that need newer tables then fail with an `internal` error.
    int target_version = 0;
};

// Retrieval limits. cost(text) measures an item against budget; when empty, the cost is the
// number of UTF-8 characters. Plug a tokenizer's count in to budget in tokens.
struct RetrieveParams {
    size_t max_items = 8;
    size_t budget = 2000;
    size_t max_query_terms = 8;  // the rarest window words searched for (bounds latency)
    std::function<size_t(std::string_view)> cost;
    // Notes made for this document come first (in rank order), then the others; "" = none.
    std::string prefer_document;
};

struct MemoryStoreStats {
    int64_t n_items = 0;
    int64_t n_bytes = 0;
    int64_t n_outbox_pending = 0;
    int64_t n_evicted = 0;  // evicted by this object since open
};

// ---- the store -------------------------------------------------------------------------

class MemoryStore {
public:
    // Opens (creating if missing) the database at params.path, sets WAL mode, busy timeout
    // and runs the forward migrations. Throws MemoryStoreError (corrupt, read_only, busy,
    // schema_too_new, open_failed, invalid_argument for bad caps).
    explicit MemoryStore(const MemoryStoreParams& params);
    ~MemoryStore();
    MemoryStore(const MemoryStore&) = delete;
    MemoryStore& operator=(const MemoryStore&) = delete;

    static int latest_schema_version();  // the version a fresh open migrates to
    int schema_version();                // PRAGMA user_version of the open file
    const std::string& path() const;

    // -- sync --
    // The stored cursor; "" before the first page.
    std::string cursor();
    // Applies one change-feed page and sets the cursor to next_cursor, all in ONE transaction:
    // on any error nothing of the page is kept and the cursor is unchanged. Items are upserted
    // by id (applying a page twice is a no-op), tombstones delete (unknown ids are fine).
    // Then evicts least recently used items beyond the caps, in the same transaction.
    // Items must have a non-empty id and text (invalid_argument otherwise).
    void apply_changes(const std::vector<MemoryChange>& page, const std::string& next_cursor);
    // The same for a page of a feed with epochs: with reset (the cursor was from another
    // epoch: a reset or restored cloud), every stored item is deleted first, in the same
    // transaction; a non-empty epoch is stored with the cursor.
    void apply_changes(const std::vector<MemoryChange>& page, const std::string& next_cursor, const std::string& epoch,
                       bool reset);
    // The epoch of the stored cursor ("" when the cloud sent none yet).
    std::string epoch();

    // -- retrieval --
    // The items that best match `window` (FTS5 bm25 over text and title, searching for the
    // window's rarest max_query_terms words that occur in the store; on equal scores the most
    // recently created first), fitted greedily in rank order into params.budget and at
    // most params.max_items, each text once (a note with the text of one already chosen, under
    // another id, is skipped). Records their use: last_used_at = now, seen at once by get() and
    // eviction, written to the file in batches (never waiting for a sync writer's lock). Any text is safe: the MATCH
    // query is built by fts5_match_query(), never from raw user syntax. Empty window or no
    // usable words: an empty result.
    std::vector<MemoryItem> retrieve(std::string_view window, const RetrieveParams& params);
    // How well stored memory covers `text`: the best bm25 match score, made positive (higher =
    // better; 0 when nothing matches). The router's memory-coverage signal.
    double coverage(std::string_view text);
    // The item with this id, if present (does not touch last_used_at).
    bool get(const std::string& id, MemoryItem* out);

    // -- outbox --
    // Adds a memory request (state pending, due now) for the app's document (may be "").
    // Idempotent: an existing request_id is left as it is and false is returned; true when it
    // was added.
    bool outbox_enqueue(const std::string& request_id, const std::string& context, const std::string& document = "");
    // Pending requests with next_attempt_at <= now_ms, oldest first, at most `limit`.
    std::vector<OutboxRequest> outbox_due(int64_t now_ms, size_t limit = 16);
    // The cloud accepted the request (202): state sent. Unknown id: invalid_argument.
    void outbox_mark_sent(const std::string& request_id);
    // A send failed: attempts + 1 and due again at next_attempt_at (Unix ms); give_up moves
    // it to 'dead' instead (e.g. a 4xx that will never succeed). Unknown id: invalid_argument.
    void outbox_mark_failed(const std::string& request_id, int64_t next_attempt_at,
                            bool give_up = false);
    // The request, if present.
    bool outbox_get(const std::string& request_id, OutboxRequest* out);

    MemoryStoreStats stats();

    // Maintenance: merges the FTS5 index into one segment (retrieval probes every segment, so
    // after many small pages it slows down; measured 1.4x on 100k notes). O(index size),
    // about a second for 100k notes, under the write lock: call it when idle, e.g. after a
    // large initial sync. Also writes pending LRU touches.
    void optimize();

    struct Impl;  // opaque; defined in memory_store.cpp

private:
    std::unique_ptr<Impl> impl_;
};

// ---- helpers shared with the reference cloud server ----------------------------------------

// Builds a safe FTS5 MATCH expression from free text: its words (letters/digits, any UTF-8
// letters kept), lowercased, without common English stop words and duplicates, the last
// max_terms of them (the end of a window is nearest the cursor), each as a quoted string,
// joined by OR. Quotes, operators (AND/OR/NOT/NEAR), column filters, '*', '^', parentheses
// never reach FTS5 as syntax. Returns "" when no word is usable.
std::string fts5_match_query(std::string_view text, size_t max_terms = 24);
// The terms fts5_match_query() would use, unquoted, in text order.
std::vector<std::string> fts5_terms(std::string_view text, size_t max_terms = 24);

// Current time in Unix milliseconds.
int64_t unix_ms_now();

}  // namespace tandem
