// The PostgreSQL ServerDb (--db postgresql://...): the contract of server_db.h on a database
// that any number of tandem-cloud replicas share.
//
//   table      columns                                                  notes
//   meta       key PK, value                                            schema_version, epoch,
//                                                                       corpus_signature
//   docs       doc_id PK, title
//   passages   pid BIGSERIAL PK, doc_id, ord, text,                     GIN index on tsv;
//              tsv = to_tsvector('english', text) (generated, stored)   ranked by ts_rank_cd
//   tenants    tenant PK, created_at                                    one row per tenant that
//                                                                       wrote: its write lock
//   requests   (tenant, request_id) PK, document, context, body_sha256, the job table: a worker
//              max_items, state, error, created_at,                     holds a pending request
//              lease_owner, lease_until (ms, database clock), claims    while lease_until > now
//   feed       (tenant, seq) PK, tag, id, deleted, retracted,           as in SQLite
//              request_id, document, text, doc_id, title, method, created_at
//
// Concurrency. Every transaction that writes a tenant's requests or feed first locks that
// tenant's row (SELECT ... FOR UPDATE), so one tenant's writers take turns: the feed's seq is
// assigned and committed in the same order (a reader at READ COMMITTED never sees seq 11
// before seq 10 commits, which a sequence would allow), the pending-request cap holds, and a
// request_id is added once. Workers claim jobs with FOR UPDATE SKIP LOCKED, so two replicas
// never wait on, nor take, the same request; complete_request appends only for the worker
// that holds the lease. Writers NOTIFY (feed_events.h) in the same transaction.
#include <libpq-fe.h>

#include "pg_conn.h"
#include "tandem/cloud/random_id.h"
#include "tandem/cloud/server_db.h"
#include "tandem/memory_store.h"  // fts5_terms, unix_ms_now

namespace tandem::cloud {

namespace {

constexpr int kSchemaVersion = 1;
// pg_advisory_xact_lock key taken while creating the schema or loading the corpus, so that
// replicas starting together do it once.
constexpr int64_t kSetupLock = 0x74616e64656d;  // "tandem"

const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs(doc_id TEXT PRIMARY KEY, title TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS passages(pid BIGSERIAL PRIMARY KEY, doc_id TEXT NOT NULL,
  ord INTEGER NOT NULL, text TEXT NOT NULL,
  tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED);
CREATE INDEX IF NOT EXISTS passages_tsv ON passages USING GIN (tsv);
CREATE TABLE IF NOT EXISTS tenants(tenant TEXT PRIMARY KEY, created_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS requests(tenant TEXT NOT NULL, request_id TEXT NOT NULL,
  document TEXT NOT NULL DEFAULT '', context TEXT NOT NULL, body_sha256 TEXT NOT NULL,
  max_items INTEGER NOT NULL, state TEXT NOT NULL, error TEXT NOT NULL DEFAULT '',
  created_at BIGINT NOT NULL, lease_owner TEXT NOT NULL DEFAULT '',
  lease_until BIGINT NOT NULL DEFAULT 0, claims INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(tenant, request_id));
CREATE INDEX IF NOT EXISTS requests_pending ON requests(tenant, created_at) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS feed(tenant TEXT NOT NULL, seq BIGINT NOT NULL, tag TEXT NOT NULL,
  id TEXT NOT NULL, deleted BOOLEAN NOT NULL DEFAULT false, retracted BOOLEAN NOT NULL DEFAULT false,
  request_id TEXT NOT NULL DEFAULT '', document TEXT NOT NULL DEFAULT '',
  text TEXT NOT NULL DEFAULT '', doc_id TEXT NOT NULL DEFAULT '', title TEXT NOT NULL DEFAULT '',
  method TEXT NOT NULL DEFAULT '', created_at BIGINT NOT NULL, PRIMARY KEY(tenant, seq));
CREATE INDEX IF NOT EXISTS feed_item ON feed(tenant, id);
CREATE INDEX IF NOT EXISTS feed_document ON feed(tenant, document) WHERE NOT deleted AND NOT retracted;
)sql";

// The database's clock in Unix ms: leases are compared on one clock whatever the replicas' are.
#define DB_NOW_MS "(extract(epoch from clock_timestamp()) * 1000)::bigint"
#define REQUEST_COLUMNS "tenant, request_id, document, context, max_items, state, error, created_at"

void read_request(const PgResult& r, int row, MemoryRequest* out) {
    out->tenant = r.str(row, 0);
    out->request_id = r.str(row, 1);
    out->document = r.str(row, 2);
    out->context = r.str(row, 3);
    out->max_items = (int)r.i64(row, 4);
    out->state = r.str(row, 5);
    out->error = r.str(row, 6);
    out->created_at = r.i64(row, 7);
}

// COPY's text format: backslash, tab, newline and carriage return escaped.
void copy_escape(const std::string& s, std::string& out) {
    for (char c : s) {
        switch (c) {
            case '\\': out += "\\\\"; break;
            case '\t': out += "\\t"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            default: out += c;
        }
    }
}

bool valid_utf8(const std::string& s) {
    size_t i = 0;
    while (i < s.size()) {
        const unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (n == 0 || i + n > s.size()) return false;
        for (size_t k = 1; k < n; k++)
            if (((unsigned char)s[i + k] >> 6) != 2) return false;
        i += n;
    }
    return true;
}

// ---- the database ----------------------------------------------------------------------

class PgServerDb final : public ServerDb {
public:
    explicit PgServerDb(const std::string& conninfo);

    std::string corpus_signature() override { return meta("corpus_signature"); }
    void replace_corpus(const std::vector<CorpusDoc>& docs, const std::string& signature) override;
    int64_t count_docs() override { return count("count docs", "SELECT count(*) FROM docs"); }
    int64_t count_passages() override { return count("count passages", "SELECT count(*) FROM passages"); }
    std::vector<Passage> search(const std::string& text, size_t limit, const std::string& exclude_doc_id) override;
    bool get_document(const std::string& doc_id, CorpusDoc* out) override;
    std::string epoch() override { return epoch_; }

    AddResult add_request(const std::string& tenant, const NewRequest& r, int64_t max_pending) override;
    bool claim_request(const std::string& worker, int64_t lease_ms, const std::string& after_tenant,
                       MemoryRequest* out) override;
    bool renew_lease(const std::string& tenant, const std::string& request_id, const std::string& worker,
                     int64_t lease_ms) override;
    bool get_request(const std::string& tenant, const std::string& request_id, MemoryRequest* out) override;
    bool complete_request(const std::string& tenant, const std::string& request_id, const std::string& worker,
                          const std::vector<NewNote>& notes) override;
    void fail_request(const std::string& tenant, const std::string& request_id, const std::string& worker,
                      const std::string& error) override;
    int64_t count_pending(const std::string& tenant) override;

    std::vector<FeedEntry> changes(const std::string& tenant, int64_t since, size_t limit) override;
    std::optional<std::string> entry_tag(const std::string& tenant, int64_t seq) override;
    FeedEntry head(const std::string& tenant) override;

    int64_t forget_item(const std::string& tenant, const std::string& item_id) override;
    int64_t forget_document(const std::string& tenant, const std::string& document) override;
    int64_t forget_all(const std::string& tenant) override;

private:
    int schema_version();
    void create_schema();
    std::string meta(const std::string& key);
    int64_t count(const char* op, const char* sql);
    void lock_tenant(const std::string& tenant);
    void append(const std::string& tenant, std::vector<FeedEntry>& entries);
    int64_t retract(const std::string& tenant, const PgResult& live);
    void notify_feed(const std::string& tenant);

    PgConn db_;
    std::string epoch_;
};

PgServerDb::PgServerDb(const std::string& conninfo) : db_(conninfo) {
    if (schema_version() != kSchemaVersion) create_schema();
    epoch_ = meta("epoch");
}

// The meta table's schema_version; 0 before the schema exists.
int PgServerDb::schema_version() {
    PgResult t = db_.exec("inspect schema", "SELECT to_regclass('meta') IS NOT NULL");
    if (!t.boolean(0, 0)) return 0;
    PgResult v = db_.exec("read schema version", "SELECT value FROM meta WHERE key = 'schema_version'");
    return v.rows() ? std::stoi(v.str(0, 0)) : 0;
}

// Creates the tables once, whichever replica comes first: the others wait on the advisory
// lock and find them made. (DDL on tables in use would take locks against running writers,
// so a database that has the schema is never sent any.)
void PgServerDb::create_schema() {
    PgTx tx(db_);
    db_.exec("lock schema", "SELECT pg_advisory_xact_lock($1)", {kSetupLock});
    const int v = schema_version();
    if (v > kSchemaVersion)
        throw ServerDbError("PostgreSQL database " + db_.display() + ": schema version " + std::to_string(v) +
                            " is newer than this tandem-cloud knows (" + std::to_string(kSchemaVersion) + ")");
    if (v == kSchemaVersion) return;
    db_.exec_script("create schema", kSchema);
    db_.exec("write meta", "INSERT INTO meta(key, value) VALUES ('schema_version', $1), ('epoch', $2)",
             {std::to_string(kSchemaVersion), random_hex(8)});
    tx.commit();
}

std::string PgServerDb::meta(const std::string& key) {
    PgResult r = db_.exec("read meta", "SELECT value FROM meta WHERE key = $1", {key});
    return r.rows() ? r.str(0, 0) : std::string();
}

int64_t PgServerDb::count(const char* op, const char* sql) {
    PgResult r = db_.exec(op, sql);
    return r.rows() ? r.i64(0, 0) : 0;
}

// ---- corpus ----------------------------------------------------------------------------

void PgServerDb::replace_corpus(const std::vector<CorpusDoc>& docs, const std::string& signature) {
    PgTx tx(db_);
    db_.exec("lock corpus", "SELECT pg_advisory_xact_lock($1)", {kSetupLock});
    if (meta("corpus_signature") == signature) return;  // another replica loaded it meanwhile
    db_.exec_script("clear corpus", "TRUNCATE docs, passages");
    // COPY streams the rows in one round trip per batch instead of one INSERT each.
    auto copy = [&](const char* sql, const std::string& rows) {
        db_.exec_script("copy corpus", sql);
        PGconn* c = db_.raw();
        if (PQputCopyData(c, rows.data(), (int)rows.size()) != 1 || PQputCopyEnd(c, nullptr) != 1)
            throw ServerDbError("PostgreSQL database " + db_.display() + ": copy corpus: " + PQerrorMessage(c));
        PgResult done(PQgetResult(c));
        while (PGresult* extra = PQgetResult(c)) PQclear(extra);
        (void)done;
    };
    std::string doc_rows, passage_rows;
    for (const CorpusDoc& d : docs) {
        copy_escape(d.doc_id, doc_rows);
        doc_rows += '\t';
        copy_escape(d.title, doc_rows);
        doc_rows += '\n';
        for (size_t i = 0; i < d.passages.size(); i++) {
            copy_escape(d.doc_id, passage_rows);
            passage_rows += '\t' + std::to_string(i) + '\t';
            copy_escape(d.passages[i], passage_rows);
            passage_rows += '\n';
        }
    }
    copy("COPY docs(doc_id, title) FROM STDIN", doc_rows);
    copy("COPY passages(doc_id, ord, text) FROM STDIN", passage_rows);
    db_.exec("check corpus", "SELECT count(*) FROM passages");  // surfaces a failed COPY
    db_.exec("write meta",
             "INSERT INTO meta(key, value) VALUES ('corpus_signature', $1) "
             "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
             {signature});
    tx.commit();
}

std::vector<Passage> PgServerDb::search(const std::string& text, size_t limit, const std::string& exclude_doc_id) {
    std::vector<Passage> out;
    // The same terms as SQLite's FTS5 query; each is letters/digits only, so joined by '|'
    // they are a valid to_tsquery expression (stemmed, stop words dropped by PostgreSQL).
    std::string query;
    for (const std::string& t : fts5_terms(text, 32)) {
        if (!valid_utf8(t)) continue;
        if (!query.empty()) query += " | ";
        query += t;
    }
    if (query.empty() || limit == 0) return out;
    PgResult r = db_.exec("search corpus",
                          "SELECT p.doc_id, d.title, p.text, ts_rank_cd(p.tsv, q) AS score "
                          "FROM passages p JOIN docs d ON d.doc_id = p.doc_id, to_tsquery('english', $1) q "
                          "WHERE p.tsv @@ q AND p.doc_id <> $3 ORDER BY score DESC, p.pid LIMIT $2",
                          {query, limit, exclude_doc_id});
    for (int i = 0; i < r.rows(); i++) out.push_back({r.str(i, 0), r.str(i, 1), r.str(i, 2), r.f64(i, 3)});
    return out;
}

bool PgServerDb::get_document(const std::string& doc_id, CorpusDoc* out) {
    PgResult d = db_.exec("read document", "SELECT title FROM docs WHERE doc_id = $1", {doc_id});
    if (d.rows() == 0) return false;
    out->doc_id = doc_id;
    out->title = d.str(0, 0);
    out->passages.clear();
    PgResult p = db_.exec("read passages", "SELECT text FROM passages WHERE doc_id = $1 ORDER BY ord", {doc_id});
    for (int i = 0; i < p.rows(); i++) out->passages.push_back(p.str(i, 0));
    return true;
}

// ---- requests --------------------------------------------------------------------------

void PgServerDb::lock_tenant(const std::string& tenant) {
    db_.exec("add tenant", "INSERT INTO tenants(tenant, created_at) VALUES ($1, $2) ON CONFLICT (tenant) DO NOTHING",
             {tenant, unix_ms_now()});
    db_.exec("lock tenant", "SELECT 1 FROM tenants WHERE tenant = $1 FOR UPDATE", {tenant});
}

ServerDb::AddResult PgServerDb::add_request(const std::string& tenant, const NewRequest& r, int64_t max_pending) {
    const std::string digest = request_digest(r.document, r.context);
    PgTx tx(db_);
    lock_tenant(tenant);
    PgResult found = db_.exec("find request", "SELECT body_sha256 FROM requests WHERE tenant = $1 AND request_id = $2",
                              {tenant, r.request_id});
    if (found.rows()) return found.str(0, 0) == digest ? AddResult::duplicate : AddResult::conflict;
    if (count_pending(tenant) >= max_pending) return AddResult::too_many;
    db_.exec("add request",
             "INSERT INTO requests(tenant, request_id, document, context, body_sha256, max_items, state, created_at) "
             "VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7)",
             {tenant, r.request_id, r.document, r.context, digest, r.max_items, unix_ms_now()});
    db_.exec("notify workers", "SELECT pg_notify('tandem_jobs', '')");
    tx.commit();
    return AddResult::created;
}

bool PgServerDb::claim_request(const std::string& worker, int64_t lease_ms, const std::string& after_tenant,
                               MemoryRequest* out) {
    // A request whose workers keep dying (or losing their lease) is given up on, not retried forever.
    db_.exec("give up requests",
             "UPDATE requests SET state = 'failed', context = '', error = 'gave up after ' || claims || "
             "' attempts: the workers producing it stopped (crashed or lost their lease)' "
             "WHERE state = 'pending' AND claims >= $1 AND lease_until < " DB_NOW_MS,
             {kMaxClaims});
    PgResult r = db_.exec(
        "claim request",
        "UPDATE requests SET lease_owner = $1, lease_until = " DB_NOW_MS " + $2, claims = claims + 1 "
        "WHERE (tenant, request_id) = (SELECT tenant, request_id FROM requests "
        "  WHERE state = 'pending' AND lease_until < " DB_NOW_MS
        "  ORDER BY tenant <= $3, tenant, created_at, request_id LIMIT 1 FOR UPDATE SKIP LOCKED) "
        "RETURNING " REQUEST_COLUMNS,
        {worker, lease_ms, after_tenant});
    if (r.rows() == 0) return false;
    read_request(r, 0, out);
    return true;
}

bool PgServerDb::renew_lease(const std::string& tenant, const std::string& request_id, const std::string& worker,
                             int64_t lease_ms) {
    PgResult r = db_.exec("renew lease",
                          "UPDATE requests SET lease_until = " DB_NOW_MS " + $4 "
                          "WHERE tenant = $1 AND request_id = $2 AND lease_owner = $3 AND state = 'pending'",
                          {tenant, request_id, worker, lease_ms});
    return r.affected() == 1;
}

bool PgServerDb::get_request(const std::string& tenant, const std::string& request_id, MemoryRequest* out) {
    PgResult r = db_.exec("get request", "SELECT " REQUEST_COLUMNS " FROM requests WHERE tenant = $1 AND request_id = $2",
                          {tenant, request_id});
    if (r.rows() == 0) return false;
    read_request(r, 0, out);
    return true;
}

bool PgServerDb::complete_request(const std::string& tenant, const std::string& request_id, const std::string& worker,
                                  const std::vector<NewNote>& notes) {
    PgTx tx(db_);
    lock_tenant(tenant);
    PgResult req = db_.exec("find claimed request",
                            "SELECT document FROM requests WHERE tenant = $1 AND request_id = $2 "
                            "AND state = 'pending' AND lease_owner = $3",
                            {tenant, request_id, worker});
    if (req.rows() == 0) return false;  // done elsewhere, forgotten, or claimed by another worker
    const std::string document = req.str(0, 0);
    std::vector<FeedEntry> entries = note_entries(request_id, document, notes);
    append(tenant, entries);
    db_.exec("finish request",
             "UPDATE requests SET state = 'done', context = '', lease_owner = '' WHERE tenant = $1 AND request_id = $2",
             {tenant, request_id});
    if (!entries.empty()) notify_feed(tenant);
    tx.commit();
    return true;
}

void PgServerDb::fail_request(const std::string& tenant, const std::string& request_id, const std::string& worker,
                              const std::string& error) {
    db_.exec("fail request",
             "UPDATE requests SET state = 'failed', error = $4, context = '', lease_owner = '' "
             "WHERE tenant = $1 AND request_id = $2 AND state = 'pending' AND lease_owner = $3",
             {tenant, request_id, worker, error});
}

int64_t PgServerDb::count_pending(const std::string& tenant) {
    PgResult r = db_.exec("count pending", "SELECT count(*) FROM requests WHERE state = 'pending' AND tenant = $1", {tenant});
    return r.i64(0, 0);
}

// ---- feed ------------------------------------------------------------------------------

void PgServerDb::notify_feed(const std::string& tenant) {
    db_.exec("notify feed", "SELECT pg_notify('tandem_feed', $1)", {tenant});
}

// Inside the caller's transaction, after lock_tenant(tenant).
void PgServerDb::append(const std::string& tenant, std::vector<FeedEntry>& entries) {
    int64_t seq = head(tenant).seq;
    for (FeedEntry& e : entries) {
        e.seq = ++seq;
        e.tag = new_feed_tag();
        db_.exec("append to feed",
                 "INSERT INTO feed(tenant, seq, tag, id, deleted, request_id, document, text, doc_id, title, method, "
                 "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                 {tenant, e.seq, e.tag, e.id, e.deleted, e.request_id, e.document, e.text, e.doc_id, e.title, e.method,
                  e.created_at});
    }
}

std::vector<FeedEntry> PgServerDb::changes(const std::string& tenant, int64_t since, size_t limit) {
    PgResult r = db_.exec("read feed",
                          "SELECT seq, tag, id, deleted, request_id, document, text, doc_id, title, method, created_at "
                          "FROM feed WHERE tenant = $1 AND seq > $2 AND NOT retracted ORDER BY seq LIMIT $3",
                          {tenant, since, limit});
    std::vector<FeedEntry> out;
    out.reserve((size_t)r.rows());
    for (int i = 0; i < r.rows(); i++) {
        FeedEntry e;
        e.seq = r.i64(i, 0);
        e.tag = r.str(i, 1);
        e.id = r.str(i, 2);
        e.deleted = r.boolean(i, 3);
        e.request_id = r.str(i, 4);
        e.document = r.str(i, 5);
        e.text = r.str(i, 6);
        e.doc_id = r.str(i, 7);
        e.title = r.str(i, 8);
        e.method = r.str(i, 9);
        e.created_at = r.i64(i, 10);
        out.push_back(std::move(e));
    }
    return out;
}

std::optional<std::string> PgServerDb::entry_tag(const std::string& tenant, int64_t seq) {
    PgResult r = db_.exec("read feed entry", "SELECT tag FROM feed WHERE tenant = $1 AND seq = $2", {tenant, seq});
    if (r.rows() == 0) return std::nullopt;
    return r.str(0, 0);
}

FeedEntry PgServerDb::head(const std::string& tenant) {
    PgResult r = db_.exec("read feed head", "SELECT seq, tag FROM feed WHERE tenant = $1 ORDER BY seq DESC LIMIT 1",
                          {tenant});
    FeedEntry e;
    if (r.rows()) {
        e.seq = r.i64(0, 0);
        e.tag = r.str(0, 1);
    }
    return e;
}

// ---- forgetting ------------------------------------------------------------------------

// Retracts the live items `live` lists (seq, id), inside the caller's transaction.
int64_t PgServerDb::retract(const std::string& tenant, const PgResult& live) {
    if (live.rows() == 0) return 0;
    std::vector<FeedEntry> tombstones;
    const int64_t now = unix_ms_now();
    for (int i = 0; i < live.rows(); i++) {
        db_.exec("erase item", "UPDATE feed SET retracted = true, text = '' WHERE tenant = $1 AND seq = $2",
                 {tenant, live.i64(i, 0)});
        tombstones.push_back(tombstone_entry(live.str(i, 1), now));
    }
    append(tenant, tombstones);
    notify_feed(tenant);
    return live.rows();
}

#define LIVE_ITEMS "SELECT seq, id FROM feed WHERE tenant = $1 AND NOT deleted AND NOT retracted "

int64_t PgServerDb::forget_item(const std::string& tenant, const std::string& item_id) {
    PgTx tx(db_);
    lock_tenant(tenant);
    const int64_t n = retract(tenant, db_.exec("find live items", LIVE_ITEMS "AND id = $2", {tenant, item_id}));
    tx.commit();
    return n;
}

int64_t PgServerDb::forget_document(const std::string& tenant, const std::string& document) {
    PgTx tx(db_);
    lock_tenant(tenant);
    const int64_t n =
        retract(tenant, db_.exec("find live items", LIVE_ITEMS "AND document = $2 ORDER BY seq", {tenant, document}));
    db_.exec("cancel pending requests",
             "UPDATE requests SET state = 'forgotten', context = '' WHERE tenant = $1 AND document = $2 AND state = 'pending'",
             {tenant, document});
    tx.commit();
    return n;
}

int64_t PgServerDb::forget_all(const std::string& tenant) {
    PgTx tx(db_);
    lock_tenant(tenant);
    const int64_t n = retract(tenant, db_.exec("find live items", LIVE_ITEMS "ORDER BY seq", {tenant}));
    db_.exec("cancel pending requests",
             "UPDATE requests SET state = CASE state WHEN 'pending' THEN 'forgotten' ELSE state END, context = '' "
             "WHERE tenant = $1",
             {tenant});
    tx.commit();
    return n;
}

}  // namespace

std::unique_ptr<ServerDb> open_pg_server_db(const std::string& conninfo) { return std::make_unique<PgServerDb>(conninfo); }

}  // namespace tandem::cloud
