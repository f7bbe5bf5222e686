// SqliteStmt: one use of a prepared SQLite statement (bind, step, read columns), shared by the
// memory store and the reference cloud's database (examples/cloud_server). Every failing
// SQLite call goes to the owner's fail function, which throws the owner's error (with its
// path and error class); nothing here aborts or ignores a result code.
//
// Two ways to get the statement:
//   prepared now   SqliteStmt(db, sql, op, ...)   finalized on scope exit
//   kept prepared  SqliteStmt(db, stmt, op, ...)  the caller's cache owns it; on scope exit it
//                                                 is reset and unbound (which also ends the
//                                                 read it may hold open)
//
// Not thread-safe: a statement belongs to the thread that uses its connection.
#pragma once
#include <sqlite3.h>

#include <cstdint>
#include <string>

namespace tandem {

class SqliteStmt {
public:
    // Throws the owner's error for result code rc during operation `op`; must not return.
    using FailFn = void (*)(void* owner, int rc, const char* op);

    // Prepares `sql` on `db` now (a failure goes to fail).
    SqliteStmt(sqlite3* db, const char* sql, const char* op, FailFn on_fail, void* owner);
    // Uses `kept`, prepared and owned by the caller.
    SqliteStmt(sqlite3_stmt* kept, const char* op, FailFn on_fail, void* owner)
        : st_(kept), owned_(false), op_(op), fail_(on_fail), owner_(owner) {}
    ~SqliteStmt();
    SqliteStmt(const SqliteStmt&) = delete;
    SqliteStmt& operator=(const SqliteStmt&) = delete;

    // Binds parameter i (1-based). Text is copied.
    SqliteStmt& bind(int i, const std::string& v);
    SqliteStmt& bind(int i, int64_t v);
    // True when a row is ready, false when the statement is done.
    bool step();
    // Steps to the end, ignoring rows.
    void run();
    // Back to the start for another run; the bindings are cleared too.
    void reset();
    // Columns of the current row (0-based).
    int64_t i64(int col) { return sqlite3_column_int64(st_, col); }
    double f64(int col) { return sqlite3_column_double(st_, col); }
    std::string str(int col);

private:
    [[noreturn]] void fail(int rc) const;
    void check(int rc) const {
        if (rc != SQLITE_OK) fail(rc);
    }

    sqlite3_stmt* st_ = nullptr;
    bool owned_ = true;
    const char* op_;
    FailFn fail_;
    void* owner_;
};

}  // namespace tandem
