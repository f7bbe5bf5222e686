// MemoryStore: SQLite (WAL) memory items + FTS5 index + sync cursor + outbox.
// The schema is documented as a table in tandem/memory_store.h; kMigrations is its source.
#include "tandem/memory_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <mutex>
#include <unordered_map>
#include <set>

#include "tandem/sqlite_stmt.h"

namespace tandem {

// ---- error names -----------------------------------------------------------------------

const char* memory_store_errc_name(MemoryStoreErrc c) {
    switch (c) {
        case MemoryStoreErrc::open_failed: return "open_failed";
        case MemoryStoreErrc::corrupt: return "corrupt";
        case MemoryStoreErrc::busy: return "busy";
        case MemoryStoreErrc::read_only: return "read_only";
        case MemoryStoreErrc::schema_too_new: return "schema_too_new";
        case MemoryStoreErrc::io: return "io";
        case MemoryStoreErrc::invalid_argument: return "invalid_argument";
        case MemoryStoreErrc::internal: return "internal";
    }
    return "unknown";
}

const char* outbox_state_name(OutboxState s) {
    switch (s) {
        case OutboxState::pending: return "pending";
        case OutboxState::sent: return "sent";
        case OutboxState::dead: return "dead";
    }
    return "unknown";
}

static OutboxState outbox_state_from(const std::string& s) {
    if (s == "sent") return OutboxState::sent;
    if (s == "dead") return OutboxState::dead;
    return OutboxState::pending;
}

static MemoryStoreErrc errc_from_sqlite(int rc) {
    switch (rc & 0xff) {
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB: return MemoryStoreErrc::corrupt;
        case SQLITE_BUSY:
        case SQLITE_LOCKED: return MemoryStoreErrc::busy;
        case SQLITE_READONLY: return MemoryStoreErrc::read_only;
        case SQLITE_CANTOPEN: return MemoryStoreErrc::open_failed;
        case SQLITE_IOERR:
        case SQLITE_FULL: return MemoryStoreErrc::io;
        default: return MemoryStoreErrc::internal;
    }
}

// ---- schema migrations -----------------------------------------------------------------
// Step N takes user_version N-1 to N. Never edit a released step: add a new one.

struct Migration {
    int version;
    const char* sql;
};

static const Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE memory_items(
  item_rowid INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  request_id TEXT NOT NULL DEFAULT '',
  text TEXT NOT NULL,
  doc_id TEXT NOT NULL DEFAULT '',
  title TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL DEFAULT 0,
  last_used_at INTEGER NOT NULL DEFAULT 0);
CREATE VIRTUAL TABLE memory_fts USING fts5(text, title, content='memory_items',
  content_rowid='item_rowid', tokenize='porter unicode61');
CREATE TRIGGER memory_items_ai AFTER INSERT ON memory_items BEGIN
  INSERT INTO memory_fts(rowid, text, title) VALUES (new.item_rowid, new.text, new.title);
END;
CREATE TRIGGER memory_items_ad AFTER DELETE ON memory_items BEGIN
  INSERT INTO memory_fts(memory_fts, rowid, text, title)
    VALUES ('delete', old.item_rowid, old.text, old.title);
END;
CREATE TRIGGER memory_items_au AFTER UPDATE OF text, title ON memory_items BEGIN
  INSERT INTO memory_fts(memory_fts, rowid, text, title)
    VALUES ('delete', old.item_rowid, old.text, old.title);
  INSERT INTO memory_fts(rowid, text, title) VALUES (new.item_rowid, new.text, new.title);
END;
CREATE TABLE sync_state(
  one INTEGER PRIMARY KEY CHECK (one = 1),
  cursor TEXT NOT NULL,
  updated_at INTEGER NOT NULL);
INSERT INTO sync_state VALUES (1, '', 0);
)sql"},
    {2, R"sql(
CREATE TABLE outbox(
  request_id TEXT PRIMARY KEY,
  context TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL DEFAULT 0,
  state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'dead')),
  created_at INTEGER NOT NULL DEFAULT 0);
CREATE INDEX idx_outbox_due ON outbox(state, next_attempt_at);
)sql"},
    {3, R"sql(
CREATE TABLE store_stats(
  one INTEGER PRIMARY KEY CHECK (one = 1),
  n_items INTEGER NOT NULL,
  n_bytes INTEGER NOT NULL);
INSERT INTO store_stats
  SELECT 1, count(*), coalesce(sum(length(CAST(text AS BLOB))), 0) FROM memory_items;
CREATE TRIGGER memory_items_stats_ai AFTER INSERT ON memory_items BEGIN
  UPDATE store_stats SET n_items = n_items + 1, n_bytes = n_bytes + length(CAST(new.text AS BLOB));
END;
CREATE TRIGGER memory_items_stats_ad AFTER DELETE ON memory_items BEGIN
  UPDATE store_stats SET n_items = n_items - 1, n_bytes = n_bytes - length(CAST(old.text AS BLOB));
END;
CREATE TRIGGER memory_items_stats_au AFTER UPDATE OF text ON memory_items BEGIN
  UPDATE store_stats SET n_bytes = n_bytes - length(CAST(old.text AS BLOB))
                                           + length(CAST(new.text AS BLOB));
END;
CREATE INDEX idx_items_lru ON memory_items(last_used_at, item_rowid);
)sql"},
    {4, R"sql(
ALTER TABLE memory_items ADD COLUMN document TEXT NOT NULL DEFAULT '';
CREATE INDEX idx_items_document ON memory_items(document);
ALTER TABLE sync_state ADD COLUMN epoch TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN document TEXT NOT NULL DEFAULT '';
)sql"},
};
static constexpr int kLatestVersion = int(sizeof(kMigrations) / sizeof(kMigrations[0]));

int MemoryStore::latest_schema_version() { return kLatestVersion; }

// ---- SQLite helpers --------------------------------------------------------------------

struct MemoryStore::Impl {
    MemoryStoreParams params;
    sqlite3* db = nullptr;
    std::mutex mu;
    int64_t n_evicted = 0;
    bool scratch_ready = false;  // temp tables of select_query()
    // Prepared statements, keyed by their SQL literal; finalized by close().
    std::unordered_map<const char*, sqlite3_stmt*> stmts;
    // LRU touches of retrieve() not yet written: item_rowid -> last_used_at. Written by
    // apply_changes (before eviction, same transaction), or in a batch once there are
    // kTouchBatch of them or kTouchFlushMs passed, so retrieval rarely writes.
    std::unordered_map<int64_t, int64_t> pending_touch;
    int64_t last_touch_flush_ms = 0;
    // Document frequency of index terms (stems), for select_query(); cleared by apply_changes.
    std::unordered_map<std::string, int64_t> df_cache;

    void close() {
        for (auto& [sql, st] : stmts) sqlite3_finalize(st);
        stmts.clear();
        sqlite3_close(db);
        db = nullptr;
    }

    [[noreturn]] void fail(int rc, const std::string& op) const {
        std::string reason = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
        throw MemoryStoreError(errc_from_sqlite(rc), params.path,
                               "memory store " + params.path + ": " + op + ": " + reason + " (" +
                                   sqlite3_errstr(rc) + ")");
    }
    [[noreturn]] void fail_arg(const std::string& what) const {
        throw MemoryStoreError(MemoryStoreErrc::invalid_argument, params.path,
                               "memory store " + params.path + ": " + what);
    }
    void exec(const char* sql, const char* op) {
        int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
        if (rc != SQLITE_OK) fail(rc, op);
    }
    // The statement for `sql` (a string literal: the cache key), prepared on first use.
    sqlite3_stmt* prepared(const char* sql, const char* op) {
        auto it = stmts.find(sql);
        if (it != stmts.end()) return it->second;
        sqlite3_stmt* st = nullptr;
        int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr);
        if (rc != SQLITE_OK) fail(rc, op);
        stmts[sql] = st;
        return st;
    }
};

// A cached prepared statement used by one call (tandem/sqlite_stmt.h); reset on scope exit.
// sql must be a string literal: it is the cache key.
class Stmt : public SqliteStmt {
public:
    Stmt(MemoryStore::Impl& s, const char* sql, const char* op) : SqliteStmt(s.prepared(sql, op), op, &fail_of, &s) {}

private:
    static void fail_of(void* s, int rc, const char* op) { static_cast<MemoryStore::Impl*>(s)->fail(rc, op); }
};

// BEGIN IMMEDIATE ... COMMIT; rolls back when destroyed uncommitted (exception paths).
class Transaction {
public:
    Transaction(MemoryStore::Impl& s, const char* op) : s_(s), op_(op) {
        s.exec("BEGIN IMMEDIATE", op);
    }
    void commit() {
        s_.exec("COMMIT", op_);
        done_ = true;
    }
    ~Transaction() {
        if (!done_) sqlite3_exec(s_.db, "ROLLBACK", nullptr, nullptr, nullptr);
    }

private:
    MemoryStore::Impl& s_;
    const char* op_;
    bool done_ = false;
};

// ---- LRU touches -----------------------------------------------------------------------

static constexpr size_t kTouchBatch = 256;
static constexpr int64_t kTouchFlushMs = 5000;

// Writes the pending touches inside the caller's transaction (the caller clears them after
// its commit).
static void write_touches(MemoryStore::Impl& s) {
    Stmt up(s, "UPDATE memory_items SET last_used_at = max(last_used_at, ?1) WHERE item_rowid = ?2",
            "touch item");
    for (const auto& [rowid, t] : s.pending_touch) {
        up.bind(1, t).bind(2, rowid).run();
        up.reset();
    }
}

// Writes the pending touches in their own transaction. Without wait, a writer holding the
// lock makes this a no-op (the touches stay pending): retrieval must not block on sync.
static void flush_touches(MemoryStore::Impl& s, bool wait) {
    if (s.pending_touch.empty()) return;
    if (!wait) sqlite3_busy_timeout(s.db, 0);
    try {
        Transaction tx(s, "write LRU touches");
        write_touches(s);
        tx.commit();
    } catch (const MemoryStoreError& e) {
        sqlite3_busy_timeout(s.db, s.params.busy_timeout_ms);
        if (!wait && e.code() == MemoryStoreErrc::busy) return;
        throw;
    }
    sqlite3_busy_timeout(s.db, s.params.busy_timeout_ms);
    s.pending_touch.clear();
    s.last_touch_flush_ms = unix_ms_now();
}

// BEGIN (deferred) ... COMMIT for reads.
class ReadTransaction {
public:
    explicit ReadTransaction(MemoryStore::Impl& s) : s_(s) { s.exec("BEGIN", "begin read"); }
    void end() {
        if (done_) return;
        done_ = true;
        s_.exec("COMMIT", "end read");
    }
    ~ReadTransaction() {
        if (!done_) sqlite3_exec(s_.db, "ROLLBACK", nullptr, nullptr, nullptr);
    }

private:
    MemoryStore::Impl& s_;
    bool done_ = false;
};

static int read_user_version(MemoryStore::Impl& s) {
    Stmt st(s, "PRAGMA user_version", "read schema version");
    return st.step() ? (int)st.i64(0) : 0;
}

// ---- open and migrate ------------------------------------------------------------------

static void migrate(MemoryStore::Impl& s, int target) {
    int v = read_user_version(s);
    if (v > kLatestVersion)
        throw MemoryStoreError(MemoryStoreErrc::schema_too_new, s.params.path,
                               "memory store " + s.params.path + ": schema version " +
                                   std::to_string(v) + " is newer than this build knows (" +
                                   std::to_string(kLatestVersion) + ")");
    for (const Migration& m : kMigrations) {
        if (m.version <= v || m.version > target) continue;
        Transaction tx(s, "migrate schema");
        if (read_user_version(s) >= m.version) continue;  // another process migrated first
        s.exec(m.sql, ("migrate schema to version " + std::to_string(m.version)).c_str());
        s.exec(("PRAGMA user_version = " + std::to_string(m.version)).c_str(), "set schema version");
        tx.commit();
    }
}

MemoryStore::MemoryStore(const MemoryStoreParams& params) : impl_(new Impl) {
    Impl& s = *impl_;
    s.params = params;
    if (params.path.empty()) s.fail_arg("empty database path");
    if (params.max_items <= 0 || params.max_bytes <= 0) s.fail_arg("max_items and max_bytes must be > 0");
    int target = params.target_version ? params.target_version : kLatestVersion;
    if (target < 1 || target > kLatestVersion) s.fail_arg("target_version out of range");

    int rc = sqlite3_open_v2(params.path.c_str(), &s.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                             nullptr);
    if (rc != SQLITE_OK) {
        std::string reason = s.db ? sqlite3_errmsg(s.db) : sqlite3_errstr(rc);
        s.close();
        throw MemoryStoreError(errc_from_sqlite(rc), params.path,
                               "memory store " + params.path + ": open: " + reason);
    }
    try {
        sqlite3_extended_result_codes(s.db, 1);
        sqlite3_busy_timeout(s.db, params.busy_timeout_ms);
        if (sqlite3_db_readonly(s.db, "main") == 1)
            throw MemoryStoreError(MemoryStoreErrc::read_only, params.path,
                                   "memory store " + params.path +
                                       ": the file is read-only (no write permission)");
        {
            Stmt st(s, "PRAGMA journal_mode = WAL", "set WAL mode");
            std::string mode = st.step() ? st.str(0) : "";
            if (mode != "wal")
                throw MemoryStoreError(MemoryStoreErrc::read_only, params.path,
                                       "memory store " + params.path +
                                           ": cannot switch to WAL mode (journal mode is '" + mode +
                                           "'; is the directory writable?)");
        }
        // WAL + NORMAL: a commit survives the process being killed; only an OS crash can
        // lose the last transactions (never corrupt the file).
        s.exec("PRAGMA synchronous = NORMAL", "set synchronous");
        // A 32 MiB page cache holds the FTS index of ~100k notes, so retrieval does not go
        // through read() for every page. (No mmap: an I/O error there is a SIGBUS, not an error.)
        s.exec("PRAGMA cache_size = -32768", "set cache size");
        s.exec("PRAGMA temp_store = MEMORY", "set temp store");  // retrieval's scratch tables
        migrate(s, target);
    } catch (...) {
        s.close();
        throw;
    }
}

MemoryStore::~MemoryStore() {
    if (!impl_ || !impl_->db) return;
    try {
        flush_touches(*impl_, /*wait=*/false);
    } catch (const MemoryStoreError&) {
        // best effort: a lost LRU touch only changes which item is evicted first
    }
    impl_->close();
}

const std::string& MemoryStore::path() const { return impl_->params.path; }

int MemoryStore::schema_version() {
    std::lock_guard<std::mutex> lock(impl_->mu);
    return read_user_version(*impl_);
}

// ---- sync ------------------------------------------------------------------------------

std::string MemoryStore::cursor() {
    std::lock_guard<std::mutex> lock(impl_->mu);
    Stmt st(*impl_, "SELECT cursor FROM sync_state WHERE one = 1", "read cursor");
    return st.step() ? st.str(0) : std::string();
}

// Deletes least recently used items until both caps hold. Runs inside the caller's transaction.
static void evict(MemoryStore::Impl& s) {
    int64_t n_items = 0, n_bytes = 0;
    {
        Stmt st(s, "SELECT n_items, n_bytes FROM store_stats WHERE one = 1", "read store stats");
        if (st.step()) n_items = st.i64(0), n_bytes = st.i64(1);
    }
    if (n_items <= s.params.max_items && n_bytes <= s.params.max_bytes) return;
    std::vector<int64_t> victims;
    {
        Stmt st(s,
                "SELECT item_rowid, length(CAST(text AS BLOB)) FROM memory_items "
                "ORDER BY last_used_at, item_rowid",
                "pick items to evict");
        while ((n_items > s.params.max_items || n_bytes > s.params.max_bytes) && st.step()) {
            victims.push_back(st.i64(0));
            n_items--;
            n_bytes -= st.i64(1);
        }
    }
    Stmt del(s, "DELETE FROM memory_items WHERE item_rowid = ?1", "evict item");
    for (int64_t r : victims) {
        del.bind(1, r).run();
        del.reset();
    }
    s.n_evicted += (int64_t)victims.size();
}

std::string MemoryStore::epoch() {
    std::lock_guard<std::mutex> lock(impl_->mu);
    Stmt st(*impl_, "SELECT epoch FROM sync_state WHERE one = 1", "read epoch");
    return st.step() ? st.str(0) : std::string();
}

void MemoryStore::apply_changes(const std::vector<MemoryChange>& page, const std::string& next_cursor) {
    apply_changes(page, next_cursor, "", false);
}

void MemoryStore::apply_changes(const std::vector<MemoryChange>& page, const std::string& next_cursor,
                                const std::string& epoch, bool reset) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    Impl& s = *impl_;
    Transaction tx(s, "apply changes");
    int64_t now = unix_ms_now();
    if (reset) {
        s.exec("DELETE FROM memory_items", "drop the items of another epoch");
        s.pending_touch.clear();
    }
    Stmt upsert(s,
                "INSERT INTO memory_items(id, request_id, text, doc_id, title, created_at, last_used_at, document) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
                "ON CONFLICT(id) DO UPDATE SET request_id = excluded.request_id, text = excluded.text, "
                "doc_id = excluded.doc_id, title = excluded.title, created_at = excluded.created_at, "
                "document = excluded.document "
                "WHERE text IS NOT excluded.text OR title IS NOT excluded.title "
                "OR doc_id IS NOT excluded.doc_id OR request_id IS NOT excluded.request_id "
                "OR created_at IS NOT excluded.created_at OR document IS NOT excluded.document",
                "apply item");
    Stmt del(s, "DELETE FROM memory_items WHERE id = ?1", "apply tombstone");
    for (size_t i = 0; i < page.size(); i++) {
        const MemoryItem& it = page[i].item;
        // Checked inside the transaction: a bad entry anywhere rolls back the whole page.
        if (it.id.empty()) s.fail_arg("change " + std::to_string(i) + " of the page has an empty id");
        if (page[i].deleted) {
            del.bind(1, it.id).run();
            del.reset();
            continue;
        }
        if (it.text.empty()) s.fail_arg("item '" + it.id + "' has an empty text");
        upsert.bind(1, it.id).bind(2, it.request_id).bind(3, it.text).bind(4, it.doc_id);
        upsert.bind(5, it.title).bind(6, it.created_at).bind(7, now).bind(8, it.document).run();
        upsert.reset();
    }
    Stmt cur(s,
             "UPDATE sync_state SET cursor = ?1, updated_at = ?2, epoch = CASE WHEN ?3 = '' THEN epoch ELSE ?3 END "
             "WHERE one = 1",
             "advance cursor");
    cur.bind(1, next_cursor).bind(2, now).bind(3, epoch).run();
    write_touches(s);  // so eviction sees the latest uses
    evict(s);
    tx.commit();
    s.pending_touch.clear();
    s.last_touch_flush_ms = now;
    s.df_cache.clear();
}

// ---- retrieval -------------------------------------------------------------------------

static size_t utf8_chars(std::string_view s) {
    size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
}

// Picks the query terms worth searching for. bm25 scores every row that matches any term, so
// one common word ("nations" in 30% of the notes) costs far more than it adds to the ranking.
// The window's words are stemmed by the index's own tokenizer (a scratch FTS5 table in the
// temp schema, porter unicode61 like memory_fts), their document frequencies read from the
// index (fts5vocab), and the rarest max_terms that occur at all are kept, as long as together
// they match at most kMaxPostings rows. Returns the MATCH expression.
static constexpr int64_t kMaxPostings = 1000;
static constexpr size_t kDfCacheMax = 50000;
// The temp tables select_query() uses. Created outside any transaction: made inside the read
// transaction of the first retrieve(), they vanished with its rollback (an empty result) and the
// next retrieve() failed with "no such table: temp.q_terms".
static void ensure_query_scratch(MemoryStore::Impl& s) {
    if (s.scratch_ready) return;
    s.exec("CREATE VIRTUAL TABLE IF NOT EXISTS temp.q_terms USING fts5(t, tokenize='porter unicode61');"
           "CREATE VIRTUAL TABLE IF NOT EXISTS temp.q_stems USING fts5vocab(temp, q_terms, instance);"
           "CREATE VIRTUAL TABLE IF NOT EXISTS temp.memory_vocab USING fts5vocab(main, memory_fts, row);",
           "create query scratch tables");
    s.scratch_ready = true;
}

static std::string select_query(MemoryStore::Impl& s, std::string_view window, size_t max_terms) {
    std::vector<std::string> terms = fts5_terms(window, 20);
    if (terms.empty() || max_terms == 0) return "";
    s.exec("DELETE FROM temp.q_terms", "reset query scratch");
    {
        Stmt ins(s, "INSERT INTO temp.q_terms(rowid, t) VALUES (?1, ?2)", "stem query terms");
        for (size_t i = 0; i < terms.size(); i++) {
            ins.bind(1, (int64_t)i).bind(2, terms[i]).run();
            ins.reset();
        }
    }
    struct Term {
        size_t index;  // into terms
        std::string stem;
        int64_t df = 0;
    };
    std::vector<Term> cand;
    {
        Stmt st(s, "SELECT doc, term FROM temp.q_stems WHERE \"offset\" = 0 ORDER BY doc", "read stems");
        while (st.step()) cand.push_back({(size_t)st.i64(0), st.str(1), 0});
    }
    // fts5vocab counts a term's documents by walking its postings (O(df)), so frequencies are
    // cached until the next apply_changes.
    Stmt df(s, "SELECT doc FROM temp.memory_vocab WHERE term = ?1", "read term frequency");
    if (s.df_cache.size() > kDfCacheMax) s.df_cache.clear();
    std::vector<Term> kept;
    std::set<std::string> seen;
    for (Term& t : cand) {
        if (!seen.insert(t.stem).second) continue;
        auto hit = s.df_cache.find(t.stem);
        if (hit != s.df_cache.end()) {
            t.df = hit->second;
        } else {
            df.bind(1, t.stem);
            t.df = df.step() ? df.i64(0) : 0;
            df.reset();
            s.df_cache.emplace(t.stem, t.df);
        }
        if (t.df > 0) kept.push_back(t);
    }
    std::stable_sort(kept.begin(), kept.end(), [](const Term& a, const Term& b) { return a.df < b.df; });
    // Rarest first, while the matched rows (sum of df) stay within kMaxPostings; the rarest
    // term is always kept.
    std::string q;
    int64_t postings = 0;
    size_t n = 0;
    for (const Term& t : kept) {
        if (n == max_terms || (n > 0 && postings + t.df > kMaxPostings)) break;
        postings += t.df;
        n++;
        if (!q.empty()) q += " OR ";
        q += '"' + terms[t.index] + '"';  // words hold no '"' (fts5_terms)
    }
    return q;
}

double MemoryStore::coverage(std::string_view text) {
    const std::string q = fts5_match_query(text);
    if (q.empty()) return 0.0;
    std::lock_guard<std::mutex> lock(impl_->mu);
    Stmt st(*impl_, "SELECT -bm25(memory_fts, 1.0, 0.5) FROM memory_fts WHERE memory_fts MATCH ?1 "
                    "ORDER BY bm25(memory_fts, 1.0, 0.5) LIMIT 1", "coverage");
    st.bind(1, q);
    return st.step() ? st.f64(0) : 0.0;
}

std::vector<MemoryItem> MemoryStore::retrieve(std::string_view window, const RetrieveParams& params) {
    std::vector<MemoryItem> out;
    if (params.max_items == 0 || params.budget == 0) return out;
    std::lock_guard<std::mutex> lock(impl_->mu);
    Impl& s = *impl_;
    // One read transaction for the whole lookup: one snapshot, one set of locks (not one per
    // statement); the scratch writes go to the in-memory temp schema only.
    ensure_query_scratch(s);
    ReadTransaction rtx(s);
    std::string q = select_query(s, window, params.max_query_terms);
    if (q.empty()) return out;
    // Stage 1: rank in the index alone (bm25, then newest row), candidates beyond max_items so
    // the budget can skip an oversized note for smaller ones; with a preferred document, its
    // own best candidates too (a join, over at most kMaxPostings matches). Stage 2: fetch
    // those rows only.
    struct Cand {
        int64_t rowid;
        double score;
        MemoryItem item;
        bool preferred = false;
    };
    std::vector<Cand> cands;
    std::set<int64_t> seen_rows;
    if (!params.prefer_document.empty()) {
        Stmt st(s,
                "SELECT f.rowid, bm25(memory_fts, 1.0, 0.5) AS score FROM memory_fts f "
                "JOIN memory_items m ON m.item_rowid = f.rowid WHERE memory_fts MATCH ?1 AND m.document = ?3 "
                "ORDER BY score, f.rowid DESC LIMIT ?2",
                "retrieve from the document");
        st.bind(1, q).bind(2, (int64_t)(params.max_items * 4)).bind(3, params.prefer_document);
        while (st.step())
            if (seen_rows.insert(st.i64(0)).second) cands.push_back({st.i64(0), st.f64(1), {}});
    }
    {
        Stmt st(s,
                "SELECT rowid, bm25(memory_fts, 1.0, 0.5) AS score FROM memory_fts WHERE memory_fts MATCH ?1 "
                "ORDER BY score, rowid DESC LIMIT ?2",
                "retrieve");
        st.bind(1, q).bind(2, (int64_t)(params.max_items * 4));
        while (st.step())
            if (seen_rows.insert(st.i64(0)).second) cands.push_back({st.i64(0), st.f64(1), {}});
    }
    {
        Stmt st(s,
                "SELECT id, request_id, text, doc_id, title, created_at, last_used_at, document FROM memory_items "
                "WHERE item_rowid = ?1",
                "retrieve item");
        for (Cand& c : cands) {
            st.bind(1, c.rowid);
            if (st.step()) {
                c.item.id = st.str(0);
                c.item.request_id = st.str(1);
                c.item.text = st.str(2);
                c.item.doc_id = st.str(3);
                c.item.title = st.str(4);
                c.item.created_at = st.i64(5);
                c.item.last_used_at = st.i64(6);
                c.item.document = st.str(7);
                c.preferred = !params.prefer_document.empty() && c.item.document == params.prefer_document;
            }
            st.reset();
        }
    }
    // The preferred document's notes first; ties in score: the most recently created first.
    std::stable_sort(cands.begin(), cands.end(), [](const Cand& a, const Cand& b) {
        if (a.preferred != b.preferred) return a.preferred;
        if (a.score != b.score) return a.score < b.score;
        return a.item.created_at > b.item.created_at;
    });
    std::vector<int64_t> rowids;
    std::set<std::string> texts;  // a note whose text is already chosen (another id) adds nothing to a prompt
    size_t left = params.budget;
    for (Cand& c : cands) {
        if (out.size() >= params.max_items) break;
        if (c.item.id.empty()) continue;  // index row without its item: cannot happen in one transaction
        if (texts.count(c.item.text)) continue;
        size_t cost = params.cost ? params.cost(c.item.text) : utf8_chars(c.item.text);
        if (cost > left) continue;
        left -= cost;
        rowids.push_back(c.rowid);
        texts.insert(c.item.text);
        out.push_back(std::move(c.item));
    }
    if (rowids.empty()) return out;
    rtx.end();
    // LRU touch: remembered now, written in a batch (see pending_touch).
    int64_t now = unix_ms_now();
    for (size_t i = 0; i < rowids.size(); i++) {
        int64_t& t = s.pending_touch[rowids[i]];
        t = std::max(t, now);
        out[i].last_used_at = now;
    }
    if (s.pending_touch.size() >= kTouchBatch || now - s.last_touch_flush_ms >= kTouchFlushMs)
        flush_touches(s, /*wait=*/false);
    return out;
}

bool MemoryStore::get(const std::string& id, MemoryItem* out) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    Stmt st(*impl_,
            "SELECT id, request_id, text, doc_id, title, created_at, last_used_at, item_rowid, document "
            "FROM memory_items WHERE id = ?1",
            "get item");
    st.bind(1, id);
    if (!st.step()) return false;
    if (out) {
        auto touched = impl_->pending_touch.find(st.i64(7));
        out->id = st.str(0);
        out->request_id = st.str(1);
        out->text = st.str(2);
        out->doc_id = st.str(3);
        out->title = st.str(4);
        out->created_at = st.i64(5);
        out->last_used_at = touched != impl_->pending_touch.end() ? std::max(touched->second, st.i64(6)) : st.i64(6);
        out->document = st.str(8);
    }
    return true;
}

// ---- outbox ----------------------------------------------------------------------------

bool MemoryStore::outbox_enqueue(const std::string& request_id, const std::string& context, const std::string& document) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (request_id.empty()) impl_->fail_arg("outbox_enqueue: empty request_id");
    int64_t now = unix_ms_now();
    Stmt st(*impl_,
            "INSERT INTO outbox(request_id, context, attempts, next_attempt_at, state, created_at, document) "
            "VALUES (?1, ?2, 0, ?3, 'pending', ?3, ?4) ON CONFLICT(request_id) DO NOTHING",
            "enqueue memory request");
    st.bind(1, request_id).bind(2, context).bind(3, now).bind(4, document).run();
    return sqlite3_changes(impl_->db) > 0;
}

static OutboxRequest read_outbox_row(Stmt& st) {
    OutboxRequest r;
    r.request_id = st.str(0);
    r.context = st.str(1);
    r.attempts = (int)st.i64(2);
    r.next_attempt_at = st.i64(3);
    r.state = outbox_state_from(st.str(4));
    r.document = st.str(5);
    return r;
}

std::vector<OutboxRequest> MemoryStore::outbox_due(int64_t now_ms, size_t limit) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    Stmt st(*impl_,
            "SELECT request_id, context, attempts, next_attempt_at, state, document FROM outbox "
            "WHERE state = 'pending' AND next_attempt_at <= ?1 "
            "ORDER BY next_attempt_at, created_at, request_id LIMIT ?2",
            "list due memory requests");
    st.bind(1, now_ms).bind(2, (int64_t)limit);
    std::vector<OutboxRequest> out;
    while (st.step()) out.push_back(read_outbox_row(st));
    return out;
}

void MemoryStore::outbox_mark_sent(const std::string& request_id) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    Stmt st(*impl_, "UPDATE outbox SET state = 'sent' WHERE request_id = ?1", "mark request sent");
    st.bind(1, request_id).run();
    if (sqlite3_changes(impl_->db) == 0) impl_->fail_arg("outbox: unknown request_id '" + request_id + "'");
}

void MemoryStore::outbox_mark_failed(const std::string& request_id, int64_t next_attempt_at, bool give_up) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    Stmt st(*impl_,
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, "
            "state = CASE WHEN ?3 THEN 'dead' ELSE 'pending' END WHERE request_id = ?1",
            "mark request failed");
    st.bind(1, request_id).bind(2, next_attempt_at).bind(3, (int64_t)give_up).run();
    if (sqlite3_changes(impl_->db) == 0) impl_->fail_arg("outbox: unknown request_id '" + request_id + "'");
}

bool MemoryStore::outbox_get(const std::string& request_id, OutboxRequest* out) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    Stmt st(*impl_,
            "SELECT request_id, context, attempts, next_attempt_at, state, document FROM outbox WHERE request_id = ?1",
            "get memory request");
    st.bind(1, request_id);
    if (!st.step()) return false;
    if (out) *out = read_outbox_row(st);
    return true;
}

void MemoryStore::optimize() {
    std::lock_guard<std::mutex> lock(impl_->mu);
    Impl& s = *impl_;
    flush_touches(s, /*wait=*/true);
    Transaction tx(s, "optimize index");
    s.exec("INSERT INTO memory_fts(memory_fts) VALUES ('optimize')", "optimize index");
    tx.commit();
}

MemoryStoreStats MemoryStore::stats() {
    std::lock_guard<std::mutex> lock(impl_->mu);
    MemoryStoreStats r;
    {
        Stmt st(*impl_, "SELECT n_items, n_bytes FROM store_stats WHERE one = 1", "read store stats");
        if (st.step()) r.n_items = st.i64(0), r.n_bytes = st.i64(1);
    }
    Stmt st(*impl_, "SELECT count(*) FROM outbox WHERE state = 'pending'", "count pending requests");
    if (st.step()) r.n_outbox_pending = st.i64(0);
    r.n_evicted = impl_->n_evicted;
    return r;
}

}  // namespace tandem
