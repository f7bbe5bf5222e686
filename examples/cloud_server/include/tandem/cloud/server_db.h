// The reference cloud's storage: the corpus with its full-text index, and per tenant the
// memory requests and the append-only change feed. ServerDb is the narrow interface every
// backend implements (the SQLite one below, the embedded default; a PostgreSQL one can
// implement the same operations); the HTTP layer and the worker see nothing else.
//
// Tenancy: every request, note, feed entry and deletion belongs to one tenant (a name from
// tenants.h). No operation reads or counts across tenants except the workers' claim_request,
// which hands out work fairly (round robin over tenants). A tenant's feed has its own sequence
// numbers (1, 2, 3 ...), so a position in it says nothing about other tenants; item ids are
// random (unguessable), and a lookup with another tenant's id finds nothing.
//
// SQLite schema (user_version 2; a file from before tenants, user_version 0 with a global
// feed, is migrated in one transaction: its requests and notes go to tenant "default", and the
// feed gets a new epoch so that clients resynchronise; user_version 1 gets the lease columns).
// The PostgreSQL schema (pg_server_db.cpp) has the same tables and columns.
//
//   table          columns                                              notes
//   meta           key TEXT PK, value TEXT                              corpus_signature, epoch
//   docs           doc_id TEXT PK, title TEXT
//   passages       pid INTEGER PK, doc_id, ord, text                    ~700-char passages;
//                                                                       index (doc_id, ord)
//   passages_fts   FTS5(text), external content = passages              porter unicode61
//   requests       (tenant, request_id) PK, document, context,          state: pending|done|
//                  context_sha256, max_items, state, error, created_at, failed|forgotten;
//                  lease_owner, lease_until (Unix ms), claims           context '' once handled;
//                                                                       a worker holds a pending
//                                                                       one while lease_until > now
//   feed           (tenant, seq) PK, tag, id, deleted, retracted,       one row per item or
//                  request_id, document, text, doc_id, title, method,   tombstone; a retracted
//                  created_at                                           item's text is erased
//
// One ServerDb is one connection: use one per thread (the HTTP thread and the worker each own
// one; WAL lets them run side by side). Errors throw ServerDbError naming the file.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace tandem::cloud {

class ServerDbError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct Passage {
    std::string doc_id, title, text;
    double score = 0;  // the backend's relevance (SQLite: bm25, lower is better)
};

struct CorpusDoc {
    std::string doc_id, title;
    std::vector<std::string> passages;
};

// A memory request as the client sent it.
struct NewRequest {
    std::string request_id;  // the client's idempotency key, unique per tenant
    std::string document;    // the client's document id ("" = none)
    std::string context;
    int max_items = 5;
};

struct MemoryRequest {
    std::string tenant, request_id, document, context, state, error;
    int max_items = 0;
    int64_t created_at = 0;  // Unix ms
};

// A note to append to the feed.
struct NewNote {
    std::string text, doc_id, title, method;
};

struct FeedEntry {
    int64_t seq = 0;   // position in the tenant's feed, from 1
    std::string tag;   // random per entry: with seq, it names this entry in a cursor
    std::string id;    // the item's id (a tombstone carries the id it retracts)
    bool deleted = false;
    std::string request_id, document, text, doc_id, title, method;
    int64_t created_at = 0;  // Unix ms
};

class ServerDb {
public:
    virtual ~ServerDb() = default;

    // -- corpus (shared by all tenants: the operator's documents) --
    virtual std::string corpus_signature() = 0;  // "" before the first load
    // Replaces the whole corpus by docs (one transaction) and records its signature.
    virtual void replace_corpus(const std::vector<CorpusDoc>& docs, const std::string& signature) = 0;
    virtual int64_t count_docs() = 0;
    virtual int64_t count_passages() = 0;
    // The passages most relevant to free text (any text is safe), best first, at most limit.
    // exclude_doc_id: passages of that document are never returned (the evaluation's
    // leave-one-out corpus: a draft's notes never come from its own speech); "": none excluded.
    virtual std::vector<Passage> search(const std::string& text, size_t limit, const std::string& exclude_doc_id = "") = 0;
    // The document's title and passages in order; false when doc_id is not in the corpus.
    virtual bool get_document(const std::string& doc_id, CorpusDoc* out) = 0;

    // -- the feed's identity --
    // A random id made when the database was created (or migrated); a reset or another
    // database has another one.
    virtual std::string epoch() = 0;

    // -- requests --
    enum class AddResult { created, duplicate, conflict, too_many };
    // Idempotent per (tenant, request_id): the same id and context again is a duplicate
    // (nothing added), the same id with another context a conflict; too_many when the tenant
    // already has max_pending requests pending (nothing added).
    virtual AddResult add_request(const std::string& tenant, const NewRequest& r, int64_t max_pending) = 0;
    // -- jobs: producing a pending request, by any number of workers in any number of processes --
    // Claims the next pending request that no live worker holds (never claimed, or its lease
    // ran out: its worker died or stalled): the oldest of the first tenant after after_tenant
    // (in name order, wrapping around) that has one, leased to `worker` (a name unique to one
    // worker of one process) for lease_ms. A request already claimed kMaxClaims times is failed
    // instead ("gave up ..."). False when there is none.
    virtual bool claim_request(const std::string& worker, int64_t lease_ms, const std::string& after_tenant,
                               MemoryRequest* out) = 0;
    // Extends worker's lease to now + lease_ms; false when worker holds it no longer.
    virtual bool renew_lease(const std::string& tenant, const std::string& request_id, const std::string& worker,
                             int64_t lease_ms) = 0;
    virtual bool get_request(const std::string& tenant, const std::string& request_id, MemoryRequest* out) = 0;
    // Appends the notes to the tenant's feed and marks the request done, in one transaction,
    // and forgets its context. Returns false (appending nothing) when the request is no longer
    // pending (done by another worker, or its document or the tenant's memory was forgotten
    // meanwhile) or is leased to another worker: a request is produced exactly once.
    virtual bool complete_request(const std::string& tenant, const std::string& request_id, const std::string& worker,
                                  const std::vector<NewNote>& notes) = 0;
    // Marks the request failed with `error` (shown to its tenant) if worker still holds it.
    virtual void fail_request(const std::string& tenant, const std::string& request_id, const std::string& worker,
                              const std::string& error) = 0;
    virtual int64_t count_pending(const std::string& tenant) = 0;

    // -- feed --
    // The tenant's entries with seq > since, oldest first, at most limit. Retracted items are
    // left out (their tombstones follow).
    virtual std::vector<FeedEntry> changes(const std::string& tenant, int64_t since, size_t limit) = 0;
    // The tag of the tenant's entry at seq, if there is one.
    virtual std::optional<std::string> entry_tag(const std::string& tenant, int64_t seq) = 0;
    // The tenant's last entry (seq 0 and tag "" when its feed is empty).
    virtual FeedEntry head(const std::string& tenant) = 0;

    // -- forgetting: tombstones for live items, their text erased from the feed; pending
    // requests in scope are cancelled and their contexts erased. Each returns the number of
    // items retracted (0: nothing live in scope, e.g. an unknown or another tenant's id).
    virtual int64_t forget_item(const std::string& tenant, const std::string& item_id) = 0;
    virtual int64_t forget_document(const std::string& tenant, const std::string& document) = 0;
    virtual int64_t forget_all(const std::string& tenant) = 0;
};

// Opens (creating and migrating) the SQLite database at path. Throws ServerDbError naming the
// file (unreadable, not a database, a schema newer than this build).
std::unique_ptr<ServerDb> open_server_db(const std::string& path);

// Opens the database a --db value names: "postgresql://..." or "postgres://..." (a libpq URI)
// is PostgreSQL (pg_server_db.cpp), anything else a SQLite file. Throws ServerDbError.
std::unique_ptr<ServerDb> open_database(const std::string& db);
std::unique_ptr<ServerDb> open_pg_server_db(const std::string& conninfo);

// A request given up on after this many claims (workers that died or lost their lease).
inline constexpr int kMaxClaims = 5;

// Shared by the backends: item ids (128 random bits: neither guessed nor counted), feed
// entry tags, and the digest that tells two requests with one request_id apart.
std::string new_item_id();
std::string new_feed_tag();
std::string request_digest(const std::string& document, const std::string& context);
// The feed entries of a request's notes (new ids, created now) and a tombstone, before the
// backend numbers and tags them as it appends.
std::vector<FeedEntry> note_entries(const std::string& request_id, const std::string& document,
                                    const std::vector<NewNote>& notes);
FeedEntry tombstone_entry(const std::string& item_id, int64_t now);

}  // namespace tandem::cloud
