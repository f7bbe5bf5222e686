// A small C++ face on libpq (PostgreSQL's C client library) for the PostgreSQL backend: one
// connection, statements with text parameters ($1, $2 ...) prepared once per connection,
// results read by row and column,
// transactions that roll back when left by an exception. Errors throw ServerDbError with the
// operation and PostgreSQL's message; the connection string's password never appears in them.
//
// One PgConn is one connection: use it from one thread at a time. A connection that broke
// (server restart, network) is re-established at the next statement outside a transaction.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <unordered_map>

#include "tandem/cloud/server_db.h"  // ServerDbError

struct pg_conn;
struct pg_result;

namespace tandem::cloud {

// A statement parameter, sent as text (NULL when null).
struct PgParam {
    PgParam(const std::string& s) : text(s) {}
    PgParam(const char* s) : text(s) {}
    PgParam(int64_t v) : text(std::to_string(v)) {}
    PgParam(int v) : text(std::to_string(v)) {}
    PgParam(size_t v) : text(std::to_string(v)) {}
    PgParam(bool v) : text(v ? "t" : "f") {}
    std::string text;
    bool null = false;
};

class PgResult {
public:
    explicit PgResult(pg_result* r = nullptr) : r_(r) {}
    ~PgResult();
    PgResult(PgResult&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
    PgResult& operator=(PgResult&& o) noexcept;
    PgResult(const PgResult&) = delete;
    PgResult& operator=(const PgResult&) = delete;

    int rows() const;
    int64_t affected() const;  // rows changed by an INSERT/UPDATE/DELETE
    std::string str(int row, int col) const;  // "" for NULL
    int64_t i64(int row, int col) const;
    double f64(int row, int col) const;
    bool boolean(int row, int col) const;  // 't'

private:
    pg_result* r_;
};

class PgConn {
public:
    // Connects; throws ServerDbError naming the server (not the password) when it cannot.
    explicit PgConn(std::string conninfo);
    ~PgConn();
    PgConn(const PgConn&) = delete;
    PgConn& operator=(const PgConn&) = delete;

    // Runs one statement; `op` names it in errors ("append to feed").
    PgResult exec(const char* op, const char* sql, std::initializer_list<PgParam> params = {});
    // Runs several statements without parameters (schema scripts).
    void exec_script(const char* op, const char* sql);

    pg_conn* raw() { return conn_; }
    // The connection string as it may be shown: without a password.
    const std::string& display() const { return display_; }
    bool in_transaction() const { return tx_depth_ > 0; }

private:
    friend class PgTx;
    void connect();
    void ensure_connected();
    [[noreturn]] void fail(const char* op, const std::string& why);
    std::string conninfo_, display_;
    pg_conn* conn_ = nullptr;
    int tx_depth_ = 0;
    std::unordered_map<std::string, std::string> prepared_;  // SQL text -> prepared statement name
};

// BEGIN .. COMMIT on conn; rolled back when destroyed before commit().
class PgTx {
public:
    explicit PgTx(PgConn& conn);
    ~PgTx();
    void commit();

private:
    PgConn& conn_;
    bool done_ = false;
};

// The connection string with any password replaced by "***" (URI or key=value form).
std::string redact_conninfo(const std::string& conninfo);
// True when a --db value names a PostgreSQL database ("postgresql://..." or "postgres://...").
bool is_postgres_url(const std::string& db);

}  // namespace tandem::cloud
