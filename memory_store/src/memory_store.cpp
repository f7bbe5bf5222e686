// MemoryStore: SQLite (WAL) memory items + FTS5 index + sync cursor + outbox.
// The schema is documented as a table in tandem/memory_store.h; kMigrations is its source.
#include "tandem/memory_store.h"

#include <sqlite3.h>

#include <mutex>

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
};
static constexpr int kLatestVersion = int(sizeof(kMigrations) / sizeof(kMigrations[0]));

int MemoryStore::latest_schema_version() { return kLatestVersion; }

// ---- SQLite helpers --------------------------------------------------------------------

struct MemoryStore::Impl {
    MemoryStoreParams params;
    sqlite3* db = nullptr;
    std::mutex mu;
    int64_t n_evicted = 0;

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
};

// A prepared statement bound to one call; finalized on scope exit.
class Stmt {
public:
    Stmt(MemoryStore::Impl& s, const char* sql, const char* op) : s_(s), op_(op) {
        int rc = sqlite3_prepare_v2(s.db, sql, -1, &st_, nullptr);
        if (rc != SQLITE_OK) s.fail(rc, op);
    }
    ~Stmt() { sqlite3_finalize(st_); }
    Stmt& bind(int i, const std::string& v) {
        check(sqlite3_bind_text(st_, i, v.data(), (int)v.size(), SQLITE_TRANSIENT));
        return *this;
    }
    Stmt& bind(int i, int64_t v) {
        check(sqlite3_bind_int64(st_, i, v));
        return *this;
    }
    // Returns true when a row is ready, false when done.
    bool step() {
        int rc = sqlite3_step(st_);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        s_.fail(rc, op_);
    }
    void run() {
        while (step()) {
        }
    }
    void reset() {
        sqlite3_reset(st_);
        sqlite3_clear_bindings(st_);
    }
    int64_t i64(int col) { return sqlite3_column_int64(st_, col); }
    double f64(int col) { return sqlite3_column_double(st_, col); }
    std::string str(int col) {
        const unsigned char* p = sqlite3_column_text(st_, col);
        return p ? std::string((const char*)p, (size_t)sqlite3_column_bytes(st_, col)) : std::string();
    }

private:
    void check(int rc) {
        if (rc != SQLITE_OK) s_.fail(rc, op_);
    }
    MemoryStore::Impl& s_;
    const char* op_;
    sqlite3_stmt* st_ = nullptr;
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
        sqlite3_close(s.db);
        s.db = nullptr;
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
        migrate(s, target);
    } catch (...) {
        sqlite3_close(s.db);
        s.db = nullptr;
        throw;
    }
}

MemoryStore::~MemoryStore() {
    if (impl_ && impl_->db) sqlite3_close(impl_->db);
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

void MemoryStore::apply_changes(const std::vector<MemoryChange>& page, const std::string& next_cursor) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    Impl& s = *impl_;
    Transaction tx(s, "apply changes");
    int64_t now = unix_ms_now();
    Stmt upsert(s,
                "INSERT INTO memory_items(id, request_id, text, doc_id, title, created_at, last_used_at) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
                "ON CONFLICT(id) DO UPDATE SET request_id = excluded.request_id, text = excluded.text, "
                "doc_id = excluded.doc_id, title = excluded.title, created_at = excluded.created_at "
                "WHERE text IS NOT excluded.text OR title IS NOT excluded.title "
                "OR doc_id IS NOT excluded.doc_id OR request_id IS NOT excluded.request_id "
                "OR created_at IS NOT excluded.created_at",
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
        upsert.bind(5, it.title).bind(6, it.created_at).bind(7, now).run();
        upsert.reset();
    }
    Stmt cur(s, "UPDATE sync_state SET cursor = ?1, updated_at = ?2 WHERE one = 1", "advance cursor");
    cur.bind(1, next_cursor).bind(2, now).run();
    evict(s);
    tx.commit();
}

// ---- retrieval -------------------------------------------------------------------------

static size_t utf8_chars(std::string_view s) {
    size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
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
    std::string q = fts5_match_query(window);
    if (q.empty() || params.max_items == 0 || params.budget == 0) return out;
    std::lock_guard<std::mutex> lock(impl_->mu);
    Impl& s = *impl_;
    std::vector<int64_t> rowids;
    {
        // Candidates beyond max_items let the budget skip an oversized note for smaller ones.
        Stmt st(s,
                "SELECT m.item_rowid, m.id, m.request_id, m.text, m.doc_id, m.title, m.created_at, "
                "m.last_used_at FROM memory_fts f JOIN memory_items m ON m.item_rowid = f.rowid "
                "WHERE memory_fts MATCH ?1 "
                "ORDER BY bm25(memory_fts, 1.0, 0.5), m.created_at DESC, m.item_rowid DESC LIMIT ?2",
                "retrieve");
        st.bind(1, q).bind(2, (int64_t)(params.max_items * 4));
        size_t left = params.budget;
        while (out.size() < params.max_items && st.step()) {
            MemoryItem it;
            it.id = st.str(1);
            it.request_id = st.str(2);
            it.text = st.str(3);
            it.doc_id = st.str(4);
            it.title = st.str(5);
            it.created_at = st.i64(6);
            it.last_used_at = st.i64(7);
            size_t cost = params.cost ? params.cost(it.text) : utf8_chars(it.text);
            if (cost > left) continue;
            left -= cost;
            rowids.push_back(st.i64(0));
            out.push_back(std::move(it));
        }
    }
    if (rowids.empty()) return out;
    // Touch for LRU, best effort and without waiting: retrieval sits on the generation path,
    // so if the sync writer holds the lock we skip the touch rather than block.
    sqlite3_busy_timeout(s.db, 0);
    try {
        Transaction tx(s, "touch retrieved items");
        Stmt up(s, "UPDATE memory_items SET last_used_at = ?1 WHERE item_rowid = ?2", "touch item");
        int64_t now = unix_ms_now();
        for (size_t i = 0; i < rowids.size(); i++) {
            up.bind(1, now).bind(2, rowids[i]).run();
            up.reset();
            out[i].last_used_at = now;
        }
        tx.commit();
    } catch (const MemoryStoreError& e) {
        sqlite3_busy_timeout(s.db, s.params.busy_timeout_ms);
        if (e.code() != MemoryStoreErrc::busy) throw;
        return out;
    }
    sqlite3_busy_timeout(s.db, s.params.busy_timeout_ms);
    return out;
}

bool MemoryStore::get(const std::string& id, MemoryItem* out) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    Stmt st(*impl_,
            "SELECT id, request_id, text, doc_id, title, created_at, last_used_at FROM memory_items "
            "WHERE id = ?1",
            "get item");
    st.bind(1, id);
    if (!st.step()) return false;
    if (out) {
        out->id = st.str(0);
        out->request_id = st.str(1);
        out->text = st.str(2);
        out->doc_id = st.str(3);
        out->title = st.str(4);
        out->created_at = st.i64(5);
        out->last_used_at = st.i64(6);
    }
    return true;
}

// ---- outbox ----------------------------------------------------------------------------

bool MemoryStore::outbox_enqueue(const std::string& request_id, const std::string& context) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (request_id.empty()) impl_->fail_arg("outbox_enqueue: empty request_id");
    int64_t now = unix_ms_now();
    Stmt st(*impl_,
            "INSERT INTO outbox(request_id, context, attempts, next_attempt_at, state, created_at) "
            "VALUES (?1, ?2, 0, ?3, 'pending', ?3) ON CONFLICT(request_id) DO NOTHING",
            "enqueue memory request");
    st.bind(1, request_id).bind(2, context).bind(3, now).run();
    return sqlite3_changes(impl_->db) > 0;
}

static OutboxRequest read_outbox_row(Stmt& st) {
    OutboxRequest r;
    r.request_id = st.str(0);
    r.context = st.str(1);
    r.attempts = (int)st.i64(2);
    r.next_attempt_at = st.i64(3);
    r.state = outbox_state_from(st.str(4));
    return r;
}

std::vector<OutboxRequest> MemoryStore::outbox_due(int64_t now_ms, size_t limit) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    Stmt st(*impl_,
            "SELECT request_id, context, attempts, next_attempt_at, state FROM outbox "
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
            "SELECT request_id, context, attempts, next_attempt_at, state FROM outbox WHERE request_id = ?1",
            "get memory request");
    st.bind(1, request_id);
    if (!st.step()) return false;
    if (out) *out = read_outbox_row(st);
    return true;
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
