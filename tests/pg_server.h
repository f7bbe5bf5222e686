// A throwaway PostgreSQL server for tests: initdb + pg_ctl on a fresh temporary directory,
// listening only on a Unix socket inside it (no TCP port), trust authentication, fsync off.
// PostgreSQL refuses to run as root, so as root the directory is handed to the `postgres`
// user and every server command runs through `runuser -u postgres`. The destructor stops the
// server (pg_ctl stop -m immediate) and removes the directory.
//
// The binaries are looked for in $TANDEM_PG_BIN, then /usr/lib/postgresql/<version>/bin
// (newest version first). Tests call skip_without_postgres() first: without the binaries it
// prints "skipped: PostgreSQL not installed" (CTest's SKIP_REGULAR_EXPRESSION marks the test
// skipped) and the test returns.
#pragma once
#include <dirent.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "test_util.h"

namespace tandem_test {

inline std::string pg_bin_dir() {
    auto has_server = [](const std::string& dir) {
        return access((dir + "/initdb").c_str(), X_OK) == 0 && access((dir + "/pg_ctl").c_str(), X_OK) == 0 &&
               access((dir + "/postgres").c_str(), X_OK) == 0;
    };
    if (const char* env = std::getenv("TANDEM_PG_BIN"); env && *env) return has_server(env) ? env : "";
    std::vector<int> versions;
    if (DIR* d = opendir("/usr/lib/postgresql")) {
        while (dirent* e = readdir(d))
            if (e->d_name[0] >= '0' && e->d_name[0] <= '9') versions.push_back(std::atoi(e->d_name));
        closedir(d);
    }
    std::sort(versions.rbegin(), versions.rend());
    for (int v : versions) {
        std::string dir = "/usr/lib/postgresql/" + std::to_string(v) + "/bin";
        if (has_server(dir)) return dir;
    }
    return "";
}

class PgServer {
public:
    // Starts the server; throws std::runtime_error with the server's log on failure.
    PgServer() : bin_(pg_bin_dir()) {
        if (bin_.empty()) throw std::runtime_error("PostgreSQL not installed");
        if (geteuid() == 0) {
            const passwd* pw = getpwnam("postgres");
            if (!pw) throw std::runtime_error("running as root and there is no 'postgres' user to run PostgreSQL as");
            if (chown(dir_.path.c_str(), pw->pw_uid, pw->pw_gid) != 0)
                throw std::runtime_error("cannot hand " + dir_.path + " to the postgres user");
            as_user_ = "runuser -u postgres -- ";
        }
        run("'" + bin_ + "/initdb' -D '" + data() + "' -U postgres --auth=trust -E UTF8 --no-sync --no-instructions",
            "initdb");
        run("'" + bin_ + "/pg_ctl' -D '" + data() + "' -l '" + dir_.file("server.log") + "' -w -t 60 -o \"" +
                "-c listen_addresses='' -k '" + dir_.path + "' -c fsync=off -c synchronous_commit=off " +
                "-c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB\" start",
            "pg_ctl start");
        started_ = true;
    }
    ~PgServer() {
        if (started_)
            (void)std::system((as_user_ + "'" + bin_ + "/pg_ctl' -D '" + data() + "' -m immediate -w stop >/dev/null 2>&1").c_str());
    }
    PgServer(const PgServer&) = delete;
    PgServer& operator=(const PgServer&) = delete;

    // A libpq connection URI for database `db` on this server's socket.
    std::string uri(const std::string& db = "postgres") const {
        return "postgresql:///" + db + "?host=" + dir_.path + "&user=postgres";
    }
    // Creates database `name` (CREATE DATABASE through psql); throws on failure.
    void create_database(const std::string& name) {
        run("'" + bin_ + "/psql' -X -q -v ON_ERROR_STOP=1 -d '" + uri() + "' -c 'CREATE DATABASE \"" + name + "\"'",
            "create database " + name);
    }
    // Runs one SQL statement with psql in database db and returns its unaligned output.
    std::string sql(const std::string& db, const std::string& statement) {
        write_file(dir_.file("query.sql"), statement);
        run("'" + bin_ + "/psql' -X -q -A -t -v ON_ERROR_STOP=1 -d '" + uri(db) + "' -f '" + dir_.file("query.sql") +
                "' -o '" + dir_.file("query.out") + "'",
            "psql");
        std::string out = read_file(dir_.file("query.out"));
        while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
        return out;
    }
    const std::string& bin_dir() const { return bin_; }

private:
    std::string data() const { return dir_.path + "/data"; }
    void run(const std::string& cmd, const std::string& what) {
        const std::string log = dir_.file("cmd.log");
        if (std::system((as_user_ + cmd + " > '" + log + "' 2>&1").c_str()) == 0) return;
        std::string msg = what + " failed: " + read_file(log);
        if (access(dir_.file("server.log").c_str(), R_OK) == 0) msg += "\nserver log:\n" + read_file(dir_.file("server.log"));
        throw std::runtime_error(msg);
    }
    TempDir dir_;
    std::string bin_;
    std::string as_user_;
    bool started_ = false;
};

// One server for the whole test process, started on first use.
inline PgServer& shared_pg_server() {
    static PgServer server;
    return server;
}

// True (after printing "skipped: PostgreSQL not installed") when the server binaries are absent.
inline bool skip_without_postgres() {
    if (!pg_bin_dir().empty()) return false;
    std::printf("skipped: PostgreSQL not installed (no initdb/pg_ctl/postgres in $TANDEM_PG_BIN or "
                "/usr/lib/postgresql/*/bin)\n");
    std::fflush(stdout);
    return true;
}

}  // namespace tandem_test
