// FeedEvents on PostgreSQL: one connection of its own doing LISTEN tandem_feed / tandem_jobs,
// a thread waiting in poll() on that connection's socket and on a pipe that stop() writes to.
#include <libpq-fe.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <thread>

#include "feed_events.h"
#include "pg_conn.h"

namespace tandem::cloud {

namespace {

class PgListener final : public FeedEvents {
public:
    explicit PgListener(std::string conninfo) : conninfo_(std::move(conninfo)) {
        if (pipe(stop_pipe_) != 0) throw ServerDbError("feed notifications: cannot create a pipe");
    }
    ~PgListener() override {
        if (thread_.joinable()) {
            const char b = 1;
            (void)!write(stop_pipe_[1], &b, 1);
            thread_.join();
        }
        close(stop_pipe_[0]);
        close(stop_pipe_[1]);
    }
    void start(FeedFn on_feed, JobsFn on_jobs) override {
        on_feed_ = std::move(on_feed);
        on_jobs_ = std::move(on_jobs);
        thread_ = std::thread([this] { run(); });
    }

private:
    // Waits up to ms for the stop pipe; true when stopping.
    bool stop_requested(int ms) {
        pollfd p{stop_pipe_[0], POLLIN, 0};
        return poll(&p, 1, ms) > 0;
    }

    void run() {
        int backoff_ms = 100;
        bool first = true;
        for (;;) {
            std::unique_ptr<PgConn> conn;
            try {
                conn = std::make_unique<PgConn>(conninfo_);
                conn->exec_script("listen", "LISTEN tandem_feed; LISTEN tandem_jobs");
            } catch (const std::exception& e) {
                std::fprintf(stderr, "tandem-cloud: feed notifications: %s (retrying in %d ms)\n", e.what(), backoff_ms);
                if (stop_requested(backoff_ms)) return;
                backoff_ms = std::min(backoff_ms * 2, 5000);
                continue;
            }
            backoff_ms = 100;
            if (!first) {  // notifications sent while we were away are lost: re-check everything
                on_feed_("");
                on_jobs_();
            }
            first = false;
            if (!listen(*conn)) return;  // stop requested; otherwise the connection broke
        }
    }

    // Delivers notifications until stop (returns false) or a broken connection (returns true).
    bool listen(PgConn& conn) {
        PGconn* c = conn.raw();
        for (;;) {
            pollfd fds[2] = {{PQsocket(c), POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
            if (poll(fds, 2, -1) < 0) continue;  // EINTR
            if (fds[1].revents) return false;
            if (!PQconsumeInput(c) || PQstatus(c) != CONNECTION_OK) {
                std::fprintf(stderr, "tandem-cloud: feed notifications: connection lost: %s", PQerrorMessage(c));
                return true;
            }
            while (PGnotify* n = PQnotifies(c)) {
                const std::string channel = n->relname, payload = n->extra ? n->extra : "";
                PQfreemem(n);
                if (channel == "tandem_feed") on_feed_(payload);
                else if (channel == "tandem_jobs") on_jobs_();
            }
        }
    }

    std::string conninfo_;
    FeedFn on_feed_;
    JobsFn on_jobs_;
    int stop_pipe_[2] = {-1, -1};
    std::thread thread_;
};

}  // namespace

std::unique_ptr<FeedEvents> open_feed_events(const std::string& db) {
    if (!is_postgres_url(db)) return nullptr;
    return std::make_unique<PgListener>(db);
}

}  // namespace tandem::cloud
