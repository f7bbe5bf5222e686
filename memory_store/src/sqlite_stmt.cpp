// SqliteStmt (see tandem/sqlite_stmt.h).
#include "tandem/sqlite_stmt.h"

#include <exception>

namespace tandem {

SqliteStmt::SqliteStmt(sqlite3* db, const char* sql, const char* op, FailFn on_fail, void* owner)
    : op_(op), fail_(on_fail), owner_(owner) {
    const int rc = sqlite3_prepare_v2(db, sql, -1, &st_, nullptr);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(st_);  // NULL after a failed prepare; a no-op then
        st_ = nullptr;
        fail(rc);
    }
}

SqliteStmt::~SqliteStmt() {
    if (owned_) {
        sqlite3_finalize(st_);
    } else {
        sqlite3_reset(st_);
        sqlite3_clear_bindings(st_);
    }
}

void SqliteStmt::fail(int rc) const {
    fail_(owner_, rc, op_);
    std::terminate();  // the owner's fail function must throw
}

SqliteStmt& SqliteStmt::bind(int i, const std::string& v) {
    check(sqlite3_bind_text(st_, i, v.data(), (int)v.size(), SQLITE_TRANSIENT));
    return *this;
}

SqliteStmt& SqliteStmt::bind(int i, int64_t v) {
    check(sqlite3_bind_int64(st_, i, v));
    return *this;
}

bool SqliteStmt::step() {
    const int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail(rc);
}

void SqliteStmt::run() {
    while (step()) {
    }
}

void SqliteStmt::reset() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
}

std::string SqliteStmt::str(int col) {
    const unsigned char* p = sqlite3_column_text(st_, col);
    return p ? std::string((const char*)p, (size_t)sqlite3_column_bytes(st_, col)) : std::string();
}

}  // namespace tandem
