// Shared by the chaos tests (tests/chaos/) and bench/bench-cloud-load: a small corpus for
// tandem-cloud, the cloud and other children as processes with their output in files, and
// readers of the cloud's feed and of SQLite files that do not use the code under test.
#pragma once
#include <sqlite3.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <thread>
#include <memory>
#include <string>
#include <vector>

#include <map>
#include <nlohmann/json.hpp>

#include "server_process.h"
#include "socket_util.h"
#include "test_util.h"

namespace tandem_test {

// Built with a sanitizer (-DTANDEM_SANITIZE=ON or thread, which builds the servers the same
// way): RSS figures then measure the sanitizer's quarantine, shadow and history memory, not
// the server's. kUbsan: the ASan build, which has UBSan too.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kUbsan = true;
#else
constexpr bool kUbsan = false;
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

// Three short documents: enough for memory requests to produce notes.
inline void write_test_corpus(const std::string& dir) {
    ::mkdir(dir.c_str(), 0755);
    write_file(dir + "/climate.txt",
               "Climate change is the defining challenge of our time.\n"
               "Rising sea levels threaten small island states in the Pacific. The Paris Agreement commits "
               "countries to limit warming well below two degrees.\n"
               "Adaptation finance for vulnerable island nations must double by the end of the decade.\n");
    write_file(dir + "/nuclear.md",
               "# Disarmament\n"
               "The Treaty on the Non-Proliferation of Nuclear Weapons entered into force in 1970.\n"
               "Verification of nuclear arsenals requires trust and regular inspections.\n");
    write_file(dir + "/trade.txt",
               "Open trade lifted millions out of poverty.\n"
               "Tariffs on agricultural exports hurt developing economies the most.\n");
}

// Lines of a file that contain `needle`.
inline int count_lines_with(const std::string& path, const std::string& needle) {
    std::ifstream f(path);
    int n = 0;
    for (std::string line; std::getline(f, line);) n += line.find(needle) != std::string::npos;
    return n;
}

// A child process with stdout and stderr in one file; SIGKILLed when the object goes away.
struct Child {
    pid_t pid = -1;
    std::string log;
    Child(const std::vector<std::string>& argv, std::string log_path, std::vector<std::pair<int, rlim_t>> soft_limits = {})
        : log(std::move(log_path)) {
        pid = ::fork();
        if (pid != 0) return;
        reset_signal_handlers();
        const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) ::dup2(fd, 1), ::dup2(fd, 2), ::close(fd);
        for (const auto& [resource, value] : soft_limits) {  // soft only: the test may raise it later
            rlimit rl{};
            ::getrlimit(resource, &rl);
            rl.rlim_cur = value;
            if (::setrlimit(resource, &rl) != 0) ::_exit(126);
        }
        std::vector<std::string> copy = argv;
        std::vector<char*> args;
        for (auto& a : copy) args.push_back(a.data());
        args.push_back(nullptr);
        ::execv(args[0], args.data());
        ::_exit(127);
    }
    ~Child() { kill(SIGKILL); }
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;

    std::string output() const {
        std::ifstream f(log);
        return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    }
    // Waits until the output contains `needle`; false after timeout_ms or when the process ended.
    bool wait_for(const std::string& needle, int timeout_ms) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        while (std::chrono::steady_clock::now() < deadline) {
            if (output().find(needle) != std::string::npos) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        return output().find(needle) != std::string::npos;
    }
    // Waits for the exit; returns the wait status, or -1 after timeout_ms.
    int wait(int timeout_ms) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        for (;;) {
            int st = 0;
            if (pid > 0 && ::waitpid(pid, &st, WNOHANG) == pid) {
                pid = -1;
                return st;
            }
            if (pid <= 0 || std::chrono::steady_clock::now() >= deadline) return -1;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
    void kill(int sig) {
        if (pid <= 0) return;
        ::kill(pid, sig);
        ::waitpid(pid, nullptr, 0);
        pid = -1;
    }
};

// tandem-cloud (the binary `bin`) on a fresh corpus and database in `dir`, stderr in
// dir/cloud.err.
struct CloudProcess {
    std::string dir, err;
    std::unique_ptr<ServerProcess> proc;
    CloudProcess(const std::string& bin, const std::string& d, std::vector<std::string> extra = {},
                 ServerProcess::Options opt = {})
        : dir(d) {
        write_test_corpus(dir + "/corpus");
        err = dir + "/cloud.err";
        opt.stderr_path = err;
        std::vector<std::string> args = {"--port", "0", "--corpus", dir + "/corpus", "--db", dir + "/cloud.db"};
        args.insert(args.end(), extra.begin(), extra.end());
        proc = std::make_unique<ServerProcess>(bin, args, opt);
    }
    int port() const { return proc->port(); }
    pid_t pid() const { return proc->pid(); }
};

// ---- the cloud's feed and the client's store, read independently of the code under test ----

// GET target with the bearer token; the JSON body, or null when there is no 200.
inline nlohmann::json get_json(int port, const std::string& token, const std::string& target) {
    const std::string raw = http_exchange(port, "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                                                "Authorization: Bearer " + token + "\r\n\r\n");
    const size_t body = raw.find("\r\n\r\n");
    if (http_status(raw) != 200 || body == std::string::npos) return nullptr;
    return nlohmann::json::parse(raw.substr(body + 4), nullptr, false);
}

// The feed as read so far, one entry per call (limit=1), so that the state after any cursor
// is known without assuming what cursors look like. The feed only grows: entries read once
// stay valid.
struct FeedMirror {
    struct Entry {
        nlohmann::json item;  // {id, text, ...} or {id, deleted: true}
        std::string cursor;   // next_cursor after this entry
    };
    std::vector<Entry> entries;

    // Reads entries until one ends at `cursor`; false when the feed ends first.
    bool read_to(int port, const std::string& token, const std::string& cursor) {
        if (cursor.empty() || cursor == "0") return true;  // before the first entry
        for (const Entry& e : entries)
            if (e.cursor == cursor) return true;
        std::string at = entries.empty() ? "" : entries.back().cursor;
        for (int guard = 0; guard < 100000; guard++) {
            nlohmann::json page = get_json(port, token, "/v1/memory/changes?limit=1&since=" + at);
            if (page.is_null() || !page.contains("items") || page["items"].empty()) return false;
            at = page["next_cursor"].get<std::string>();
            entries.push_back({page["items"][0], at});
            if (at == cursor) return true;
        }
        return false;
    }
    // The live items (id -> text) after applying entries up to `cursor` (read_to first).
    std::map<std::string, std::string> live_at(const std::string& cursor) const {
        std::map<std::string, std::string> live;
        if (cursor.empty() || cursor == "0") return live;
        for (const Entry& e : entries) {
            const std::string id = e.item["id"].get<std::string>();
            if (e.item.value("deleted", false)) live.erase(id);
            else live[id] = e.item["text"].get<std::string>();
            if (e.cursor == cursor) break;
        }
        return live;
    }
};

// Reads a SQLite file with its own read-only connection.
struct SqliteReader {
    sqlite3* db = nullptr;
    explicit SqliteReader(const std::string& path) {
        if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
            sqlite3_close(db);
            db = nullptr;
        }
        if (db) sqlite3_busy_timeout(db, 5000);
    }
    ~SqliteReader() { sqlite3_close(db); }
    // Every row of a query, columns joined by '\t'.
    std::vector<std::string> rows(const std::string& sql) const {
        std::vector<std::string> out;
        sqlite3_stmt* st = nullptr;
        if (!db || sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) return {"error: " + sql};
        while (sqlite3_step(st) == SQLITE_ROW) {
            std::string row;
            for (int c = 0; c < sqlite3_column_count(st); c++) {
                const unsigned char* t = sqlite3_column_text(st, c);
                row += (c ? "\t" : "") + std::string(t ? (const char*)t : "");
            }
            out.push_back(row);
        }
        sqlite3_finalize(st);
        return out;
    }
    std::string integrity() const {
        auto r = rows("PRAGMA integrity_check");
        return r.empty() ? "no answer" : r[0];
    }
};

// The client store's items (id -> text) and cursor (memory_store.h schema).
inline std::map<std::string, std::string> store_items(const SqliteReader& r) {
    std::map<std::string, std::string> items;
    for (const std::string& row : r.rows("SELECT id, text FROM memory_items")) {
        const size_t tab = row.find('\t');
        items[row.substr(0, tab)] = row.substr(tab + 1);
    }
    return items;
}
inline std::string store_cursor(const SqliteReader& r) {
    auto rows = r.rows("SELECT cursor FROM sync_state");
    return rows.empty() ? "" : rows[0];
}

}  // namespace tandem_test
