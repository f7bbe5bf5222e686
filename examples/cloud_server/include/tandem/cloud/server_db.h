// The reference cloud's own SQLite file (--db): the corpus with its FTS5 index, the memory
// requests and the append-only change feed.
//
//   table          columns                                              notes
//   meta           key TEXT PK, value TEXT                              corpus_signature
//   docs           doc_id TEXT PK, title TEXT
//   passages       pid INTEGER PK, doc_id, ord, text                    ~700-char passages;
//                                                                       index (doc_id, ord)
//   passages_fts   FTS5(text), external content = passages              porter unicode61
//   requests       request_id TEXT PK, context, max_items, state,       state: pending|done|failed
//                  error, created_at
//   feed           seq INTEGER PK AUTOINCREMENT, id, deleted,           one row per item or
//                  request_id, text, doc_id, title, method, created_at  tombstone; cursor = seq
//
// One ServerDb is one connection: use one per thread (the HTTP thread and the worker each own
// one; WAL lets them run side by side). Errors throw ServerDbError naming the file.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

struct sqlite3;

namespace tandem::cloud {

class ServerDbError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct Passage {
    std::string doc_id, title, text;
    double score = 0;  // bm25 (lower is better)
};

struct CorpusDoc {
    std::string doc_id, title;
    std::vector<std::string> passages;
};

struct MemoryRequest {
    std::string request_id, context, state, error;
    int max_items = 0;
    int64_t created_at = 0;
};

// A note to append to the feed.
struct NewNote {
    std::string text, doc_id, title, method;
};

struct FeedEntry {
    int64_t seq = 0;
    std::string id;
    bool deleted = false;
    std::string request_id, text, doc_id, title, method;
    int64_t created_at = 0;  // Unix ms
};

class ServerDb {
public:
    explicit ServerDb(const std::string& path);  // opens (creates) the file and its tables
    ~ServerDb();
    ServerDb(const ServerDb&) = delete;
    ServerDb& operator=(const ServerDb&) = delete;

    // -- corpus --
    std::string meta(const std::string& key);
    // Replaces the whole corpus by docs (one transaction) and records signature in meta.
    void replace_corpus(const std::vector<CorpusDoc>& docs, const std::string& signature);
    int64_t count_docs();
    int64_t count_passages();
    // Top passages for an FTS5 MATCH expression (build it with fts5_match_query); "" -> none.
    std::vector<Passage> search(const std::string& match_query, size_t limit);
    // The document's title and passages in order; false when doc_id is not in the corpus.
    bool get_document(const std::string& doc_id, CorpusDoc* out);

    // -- requests --
    enum class AddResult { created, duplicate, conflict };
    // Idempotent by request_id: the same id and context again is a duplicate (nothing added),
    // the same id with another context a conflict.
    AddResult add_request(const std::string& request_id, const std::string& context, int max_items);
    bool next_pending(MemoryRequest* out);  // the oldest pending request
    bool get_request(const std::string& request_id, MemoryRequest* out);
    // Appends the notes to the feed and marks the request done, in one transaction.
    void complete_request(const std::string& request_id, const std::vector<NewNote>& notes);
    void fail_request(const std::string& request_id, const std::string& error);
    int64_t count_pending();

    // -- feed --
    // Entries with seq > since, oldest first, at most limit.
    std::vector<FeedEntry> changes(int64_t since, size_t limit);
    int64_t head();  // the largest seq (0 when empty)
    // Appends a tombstone for a live item. Returns its seq, or 0 when the id is unknown or
    // already retracted.
    int64_t retract(const std::string& item_id);

private:
    void exec(const char* sql);
    [[noreturn]] void fail(int rc, const std::string& op);
    friend class DbStmt;
    sqlite3* db_ = nullptr;
    std::string path_;
};

}  // namespace tandem::cloud
