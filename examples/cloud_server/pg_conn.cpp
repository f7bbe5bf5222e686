// PgConn: libpq connection, statements, results and transactions (see pg_conn.h).
#include "pg_conn.h"

#include <libpq-fe.h>

#include <cstdlib>
#include <regex>
#include <vector>

namespace tandem::cloud {

// ---- results ---------------------------------------------------------------------------

PgResult::~PgResult() { PQclear(r_); }

PgResult& PgResult::operator=(PgResult&& o) noexcept {
    if (this != &o) {
        PQclear(r_);
        r_ = o.r_;
        o.r_ = nullptr;
    }
    return *this;
}

int PgResult::rows() const { return r_ ? PQntuples(r_) : 0; }

int64_t PgResult::affected() const {
    const char* n = r_ ? PQcmdTuples(r_) : "";
    return *n ? std::strtoll(n, nullptr, 10) : 0;
}

std::string PgResult::str(int row, int col) const {
    if (PQgetisnull(r_, row, col)) return "";
    return std::string(PQgetvalue(r_, row, col), (size_t)PQgetlength(r_, row, col));
}

int64_t PgResult::i64(int row, int col) const { return std::strtoll(PQgetvalue(r_, row, col), nullptr, 10); }
double PgResult::f64(int row, int col) const { return std::strtod(PQgetvalue(r_, row, col), nullptr); }
bool PgResult::boolean(int row, int col) const { return PQgetvalue(r_, row, col)[0] == 't'; }

// ---- connection strings ----------------------------------------------------------------

std::string redact_conninfo(const std::string& conninfo) {
    static const std::regex uri_password("(://[^:/?#@]*:)[^@/?#]*@");
    static const std::regex param_password("(password=)[^&\\s]*", std::regex::icase);
    std::string out = std::regex_replace(conninfo, uri_password, "$1***@");
    return std::regex_replace(out, param_password, "$1***");
}

bool is_postgres_url(const std::string& db) {
    return db.rfind("postgresql://", 0) == 0 || db.rfind("postgres://", 0) == 0;
}

// ---- the connection --------------------------------------------------------------------

PgConn::PgConn(std::string conninfo) : conninfo_(std::move(conninfo)), display_(redact_conninfo(conninfo_)) {
    connect();
}

PgConn::~PgConn() { PQfinish(conn_); }

void PgConn::connect() {
    PQfinish(conn_);
    prepared_.clear();
    conn_ = PQconnectdb(conninfo_.c_str());
    if (PQstatus(conn_) != CONNECTION_OK) {
        std::string why = conn_ ? PQerrorMessage(conn_) : "out of memory";
        while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
        PQfinish(conn_);
        conn_ = nullptr;
        throw ServerDbError("PostgreSQL database " + display_ + ": cannot connect: " + why);
    }
    // Notices ("relation already exists, skipping") are not errors: keep them off stderr.
    PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
}

void PgConn::ensure_connected() {
    if (conn_ && PQstatus(conn_) == CONNECTION_OK) return;
    if (tx_depth_ > 0) fail("statement", "the connection was lost inside a transaction");
    connect();
}

void PgConn::fail(const char* op, const std::string& why) {
    std::string w = why;
    while (!w.empty() && (w.back() == '\n' || w.back() == ' ')) w.pop_back();
    throw ServerDbError("PostgreSQL database " + display_ + ": " + op + ": " + w);
}

PgResult PgConn::exec(const char* op, const char* sql, std::initializer_list<PgParam> params) {
    ensure_connected();
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const PgParam& p : params) {
        if (!p.null && p.text.find('\0') != std::string::npos)
            fail(op, "a text value contains a NUL byte, which PostgreSQL text cannot hold");
        values.push_back(p.null ? nullptr : p.text.c_str());
    }
    // Each distinct statement is prepared once per connection (parsed and planned once), then
    // executed by name: a feed read costs one round trip and no parsing.
    auto it = prepared_.find(sql);
    if (it == prepared_.end()) {
        const std::string name = "s" + std::to_string(prepared_.size());
        PGresult* p = PQprepare(conn_, name.c_str(), sql, (int)values.size(), nullptr);
        const bool ok = PQresultStatus(p) == PGRES_COMMAND_OK;
        std::string why = ok ? "" : (p ? PQresultErrorMessage(p) : PQerrorMessage(conn_));
        PQclear(p);
        if (!ok) fail(op, why);
        it = prepared_.emplace(sql, name).first;
    }
    PGresult* r = PQexecPrepared(conn_, it->second.c_str(), (int)values.size(), values.data(), nullptr, nullptr, 0);
    const ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        std::string why = r ? PQresultErrorMessage(r) : PQerrorMessage(conn_);
        PQclear(r);
        fail(op, why);
    }
    return PgResult(r);
}

void PgConn::exec_script(const char* op, const char* sql) {
    ensure_connected();
    PGresult* r = PQexec(conn_, sql);
    const ExecStatusType st = PQresultStatus(r);
    std::string why = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? "" : (r ? PQresultErrorMessage(r) : PQerrorMessage(conn_));
    PQclear(r);
    if (!why.empty()) fail(op, why);
}

// ---- transactions ----------------------------------------------------------------------

PgTx::PgTx(PgConn& conn) : conn_(conn) {
    conn_.exec("begin transaction", "BEGIN");
    conn_.tx_depth_++;
}

void PgTx::commit() {
    done_ = true;
    conn_.tx_depth_--;
    conn_.exec("commit", "COMMIT");
}

PgTx::~PgTx() {
    if (done_) return;
    conn_.tx_depth_--;
    if (conn_.conn_ && PQstatus(conn_.conn_) == CONNECTION_OK) PQclear(PQexec(conn_.conn_, "ROLLBACK"));
}

}  // namespace tandem::cloud
