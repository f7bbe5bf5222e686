// End-to-end tests of `tandem sync` (examples/cli/cmd_sync.cpp): the real `tandem` binary
// (TANDEM_BIN) syncs a real SQLite store (memory_store) with the real reference server
// `tandem-cloud` (TANDEM_CLOUD_BIN) on a loopback port. Checks that a memory request queued in
// the store's outbox is sent, and that its notes arrive exactly once however many times the sync
// runs, also through injected faults and after crashes.
#include <curl/curl.h>
#include <doctest/doctest.h>
#include <poll.h>
#include <sqlite3.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <set>
#include <thread>

#include "tandem/memory_store.h"
#include "test_util.h"

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using tandem_test::TempDir;

namespace {

// ---- processes ---------------------------------------------------------------------------

// A child process with its stdout+stderr on a pipe. Killed (SIGKILL) when the object goes away.
struct Proc {
    pid_t pid = -1;
    int fd = -1;
    std::string out;  // everything read so far

    explicit Proc(const std::vector<std::string>& argv) {
        int fds[2];
        REQUIRE(pipe(fds) == 0);
        pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            dup2(fds[1], 1);
            dup2(fds[1], 2);
            close(fds[0]);
            close(fds[1]);
            std::vector<std::string> copy = argv;
            std::vector<char*> args;
            for (auto& a : copy) args.push_back(a.data());
            args.push_back(nullptr);
            execv(args[0], args.data());
            _exit(127);
        }
        close(fds[1]);
        fd = fds[0];
    }
    ~Proc() {
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
        }
        if (fd >= 0) close(fd);
    }
    // Reads what is available for up to ms milliseconds (stops early at EOF).
    bool pump(int ms) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, ms) <= 0) return true;
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) return false;
        out.append(buf, size_t(n));
        return true;
    }
    // Waits until a line matching re appears (or timeout); returns the first capture group.
    std::string wait_for(const std::regex& re, int timeout_ms) {
        auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
        std::smatch m;
        while (Clock::now() < deadline) {
            if (std::regex_search(out, m, re)) return m[1];
            if (!pump(50)) break;
        }
        if (std::regex_search(out, m, re)) return m[1];
        return "";
    }
    // Waits for exit, reading output; returns the exit code, or -1 on timeout / signal.
    int wait_exit(int timeout_ms) {
        auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
        while (Clock::now() < deadline) {
            pump(20);
            int st = 0;
            if (waitpid(pid, &st, WNOHANG) == pid) {
                pid = -1;
                while (pump(0) && fd >= 0) {
                    pollfd p{fd, POLLIN, 0};
                    if (poll(&p, 1, 0) <= 0) break;
                }
                return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            }
        }
        return -1;
    }
};

struct CloudServer {
    std::unique_ptr<Proc> proc;
    std::string url;
    // auth: the flags that say who may call ("--token e2e-token" unless given); port 0: any.
    explicit CloudServer(const TempDir& tmp, const std::string& faults = "",
                         std::vector<std::string> auth = {"--token", "e2e-token"}, int port = 0) {
        std::vector<std::string> argv = {TANDEM_CLOUD_BIN, "--port", std::to_string(port), "--corpus", tmp.file("corpus"),
                                         "--db", tmp.file("cloud.db")};
        argv.insert(argv.end(), auth.begin(), auth.end());
        if (!faults.empty()) {
            argv.push_back("--faults");
            argv.push_back(faults);
        }
        proc = std::make_unique<Proc>(argv);
        std::string bound = proc->wait_for(std::regex("listening on http://127\\.0\\.0\\.1:([0-9]+)"), 60000);
        INFO("tandem-cloud output: " << proc->out);
        REQUIRE(!bound.empty());
        url = "http://127.0.0.1:" + bound;
    }
};

struct RunResult {
    int code = -1;
    std::string out;
};

std::vector<std::string> sync_argv(const std::string& db, const std::string& url, const std::vector<std::string>& extra,
                                   const std::string& token) {
    std::vector<std::string> argv = {TANDEM_BIN, "sync", "--db", db, "--url", url, "--token", token, "--once"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
}

// Runs `tandem sync ...` to completion (at most 60 s).
RunResult sync_once(const std::string& db, const std::string& url, std::vector<std::string> extra = {},
                    const std::string& token = "e2e-token") {
    Proc p(sync_argv(db, url, extra, token));
    RunResult r;
    r.code = p.wait_exit(60000);
    r.out = p.out;
    return r;
}

// ---- plain HTTP for checks (libcurl easy; not the code under test) -----------------------

size_t collect(char* p, size_t s, size_t n, void* ud) {
    static_cast<std::string*>(ud)->append(p, s * n);
    return s * n;
}

std::pair<long, std::string> http(const std::string& method, const std::string& url, const std::string& token = "e2e-token") {
    CURL* e = curl_easy_init();
    std::string body;
    curl_slist* h = curl_slist_append(nullptr, ("Authorization: Bearer " + token).c_str());
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
    long status = 0;
    if (curl_easy_perform(e) == CURLE_OK) curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    return {status, body};
}

void wait_request_done(const std::string& url, const std::string& id, const std::string& token = "e2e-token") {
    auto deadline = Clock::now() + std::chrono::seconds(15);
    while (Clock::now() < deadline) {
        auto r = http("GET", url + "/v1/memory/requests/" + id, token);
        if (r.first == 200 && json::parse(r.second, nullptr, false).value("state", "") == "done") return;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL("request " << id << " not done on the server in 15 s");
}

// The server's whole feed folded into its live items: id -> (request_id, text).
std::map<std::string, std::pair<std::string, std::string>> server_items(const std::string& url,
                                                                      const std::string& token = "e2e-token") {
    std::map<std::string, std::pair<std::string, std::string>> live;
    std::string cursor;
    for (int i = 0; i < 100; ++i) {
        auto r = http("GET", url + "/v1/memory/changes?since=" + cursor + "&limit=1000", token);
        REQUIRE(r.first == 200);
        json p = json::parse(r.second);
        for (const json& it : p["items"]) {
            if (it.value("deleted", false)) live.erase(it["id"].get<std::string>());
            else live[it["id"]] = {it["request_id"], it["text"]};
        }
        if (p["items"].empty()) break;
        cursor = p["next_cursor"];
    }
    return live;
}

void write_corpus(const TempDir& tmp) {
    std::string dir = tmp.file("corpus");
    REQUIRE(mkdir(dir.c_str(), 0755) == 0);
    tandem_test::write_file(dir + "/climate.txt",
                            "Climate change is the defining challenge of our time.\n"
                            "Rising sea levels threaten small island states in the Pacific. The Paris Agreement "
                            "commits countries to limit warming well below two degrees.\n"
                            "Adaptation finance for vulnerable island nations must double by the end of the decade.\n");
    tandem_test::write_file(dir + "/nuclear.md",
                            "# Disarmament\n"
                            "The Treaty on the Non-Proliferation of Nuclear Weapons entered into force in 1970.\n"
                            "Verification of nuclear arsenals requires trust and regular inspections.\n");
    tandem_test::write_file(dir + "/trade.txt",
                            "Open trade lifted millions out of poverty.\n"
                            "Tariffs on agricultural exports hurt developing economies the most.\n");
}

void enqueue(const std::string& db, const std::string& id, const std::string& context, const std::string& document = "") {
    tandem::MemoryStoreParams p;
    p.path = db;
    tandem::MemoryStore store(p);
    REQUIRE(store.outbox_enqueue(id, context, document));
}

// Checks the store holds exactly the server's live items: same ids, same texts, no extra.
void check_exactly_once(const std::string& db, const std::map<std::string, std::pair<std::string, std::string>>& want) {
    tandem::MemoryStoreParams p;
    p.path = db;
    tandem::MemoryStore store(p);
    CHECK(store.stats().n_items == int64_t(want.size()));
    for (const auto& kv : want) {
        tandem::MemoryItem it;
        REQUIRE_MESSAGE(store.get(kv.first, &it), "item " << kv.first << " missing from the store");
        CHECK(it.request_id == kv.second.first);
        CHECK(it.text == kv.second.second);
    }
}

int count(const std::string& s, const std::string& needle) {
    int n = 0;
    for (size_t at = s.find(needle); at != std::string::npos; at = s.find(needle, at + 1)) ++n;
    return n;
}

}  // namespace

// ---- tests -------------------------------------------------------------------------------

TEST_CASE("tandem sync: a queued request's notes arrive exactly once, however often it runs") {
    TempDir tmp;
    write_corpus(tmp);
    CloudServer srv(tmp);
    const std::string db = tmp.file("client.db");
    enqueue(db, "req-sea", "What should we say about rising sea levels and small island states?");

    RunResult a = sync_once(db, srv.url, {"--wait", "5"});
    INFO("first run:\n" << a.out);
    CHECK(a.code == 0);
    CHECK(a.out.find("sent request req-sea (HTTP 202") != std::string::npos);
    CHECK(a.out.find("e2e-token") == std::string::npos);  // never printed

    wait_request_done(srv.url, "req-sea");
    auto want = server_items(srv.url);
    REQUIRE(!want.empty());
    for (auto& kv : want) CHECK(kv.second.first == "req-sea");

    RunResult b = sync_once(db, srv.url);  // picks up whatever the first run's pull missed
    INFO("second run:\n" << b.out);
    CHECK(b.code == 0);
    CHECK(count(b.out, "sent request") == 0);  // the outbox entry is 'sent': not sent again
    check_exactly_once(db, want);

    RunResult c = sync_once(db, srv.url);  // nothing new: no item applied twice
    INFO("third run:\n" << c.out);
    CHECK(c.code == 0);
    CHECK(c.out.find("applied 0 item(s), 0 tombstone(s) in 0 page(s)") != std::string::npos);
    check_exactly_once(db, want);
    {
        tandem::MemoryStoreParams p;
        p.path = db;
        tandem::MemoryStore store(p);
        tandem::OutboxRequest q;
        REQUIRE(store.outbox_get("req-sea", &q));
        CHECK(q.state == tandem::OutboxState::sent);
    }

    // A tombstone on the server removes the note locally on the next sync.
    std::string victim = want.begin()->first;
    REQUIRE(http("DELETE", srv.url + "/v1/memory/items/" + victim).first == 200);
    RunResult d = sync_once(db, srv.url);
    INFO("fourth run:\n" << d.out);
    CHECK(d.code == 0);
    CHECK(d.out.find("applied 0 item(s), 1 tombstone(s)") != std::string::npos);
    want.erase(victim);
    check_exactly_once(db, want);
}

TEST_CASE("tandem sync: dropped connections, 5xx and broken pages on the way still give exactly once") {
    TempDir tmp;
    write_corpus(tmp);
    // The POST is processed but its answer dropped, then a 500; pages: 500, dropped, truncated JSON.
    CloudServer srv(tmp, "/v1/memory/requests=drop,500;/v1/memory/changes=500,drop,truncate,badjson");
    const std::string db = tmp.file("client.db");
    enqueue(db, "req-nuke", "nuclear weapons treaty verification and inspections");
    enqueue(db, "req-trade", "tariffs on agricultural exports and developing economies");

    std::string outputs;
    int ok_runs = 0;
    for (int run = 0; run < 6 && ok_runs < 2; ++run) {  // faults make some runs fail; none may lose data
        RunResult r = sync_once(db, srv.url, {"--wait", "2"});
        outputs += "--- run " + std::to_string(run) + " (exit " + std::to_string(r.code) + ")\n" + r.out;
        CHECK((r.code == 0 || r.code == 1));
        if (r.code == 0) {
            ++ok_runs;
            wait_request_done(srv.url, "req-nuke");
            wait_request_done(srv.url, "req-trade");
        }
    }
    INFO(outputs);
    CHECK(ok_runs == 2);
    CHECK(outputs.find("malformed JSON") != std::string::npos);  // the broken page was reported...
    auto want = server_items(srv.url);
    std::set<std::string> reqs;
    for (auto& kv : want) reqs.insert(kv.second.first);
    CHECK(reqs == std::set<std::string>{"req-nuke", "req-trade"});  // one request each, despite resends
    check_exactly_once(db, want);  // ...and nothing was lost or doubled
}

TEST_CASE("tandem sync: with the cloud down the request stays queued and the run says so") {
    TempDir tmp;
    const std::string db = tmp.file("client.db");
    enqueue(db, "req-offline", "anything");
    RunResult r = sync_once(db, "http://127.0.0.1:1");
    INFO(r.out);
    CHECK(r.code == 1);
    CHECK(r.out.find("request req-offline not sent") != std::string::npos);
    CHECK(r.out.find("pull failed") != std::string::npos);
    tandem::MemoryStoreParams p;
    p.path = db;
    tandem::MemoryStore store(p);
    tandem::OutboxRequest q;
    REQUIRE(store.outbox_get("req-offline", &q));
    CHECK(q.state == tandem::OutboxState::pending);
    CHECK(q.attempts == 1);
    CHECK(q.next_attempt_at > tandem::unix_ms_now());
}

TEST_CASE("tandem sync: bad command lines and bad databases fail clearly") {
    TempDir tmp;
    Proc a({TANDEM_BIN, "sync", "--url", "http://127.0.0.1:1"});
    CHECK(a.wait_exit(10000) == 2);
    CHECK(a.out.find("--db is required") != std::string::npos);
    Proc b({TANDEM_BIN, "sync", "--db", tmp.file("x.db"), "--url", "ftp://nope", "--once"});
    CHECK(b.wait_exit(10000) == 1);
    CHECK(b.out.find("base_url must start with http") != std::string::npos);
    tandem_test::write_file(tmp.file("junk.db"), std::string(8192, 'j'));
    Proc c({TANDEM_BIN, "sync", "--db", tmp.file("junk.db"), "--url", "http://127.0.0.1:1", "--once"});
    CHECK(c.wait_exit(10000) == 1);
    CHECK(c.out.find("junk.db") != std::string::npos);
}

TEST_CASE("tandem sync: continuous mode long-polls and stops on SIGTERM") {
    TempDir tmp;
    write_corpus(tmp);
    CloudServer srv(tmp);
    const std::string db = tmp.file("client.db");
    enqueue(db, "req-live", "Paris Agreement warming two degrees");
    Proc p({TANDEM_BIN, "sync", "--db", db, "--url", srv.url, "--token", "e2e-token", "--wait", "10"});
    std::string got = p.wait_for(std::regex("(applied [1-9][0-9]* item)"), 20000);
    INFO(p.out);
    CHECK(!got.empty());
    auto t0 = Clock::now();
    kill(p.pid, SIGTERM);  // arrives during a 10 s long poll: must end it at once
    CHECK(p.wait_exit(5000) == 0);
    CHECK(std::chrono::duration<double>(Clock::now() - t0).count() < 3.0);
    CHECK(p.out.find("sync done") != std::string::npos);
}

TEST_CASE("tandem sync: killed at random moments, the store stays consistent and exactly once") {
    TempDir tmp;
    write_corpus(tmp);
    CloudServer srv(tmp, "/v1/memory/changes=delay:30*200");  // slow pages widen the windows
    const std::string db = tmp.file("client.db");
    const char* topics[] = {"sea levels island states", "nuclear treaty inspections", "tariffs exports poverty",
                            "Paris Agreement warming", "adaptation finance decade", "verification arsenals trust"};
    for (int i = 0; i < 6; ++i) enqueue(db, "req-" + std::to_string(i), topics[i]);
    std::mt19937 rng(7);
    for (int round = 0; round < 12; ++round) {
        Proc p({TANDEM_BIN, "sync", "--db", db, "--url", srv.url, "--token", "e2e-token", "--wait", "1"});
        std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 250));
        kill(p.pid, SIGKILL);
        waitpid(p.pid, nullptr, 0);
        p.pid = -1;
    }
    RunResult last = sync_once(db, srv.url);  // finish whatever the killed runs left
    for (int i = 0; i < 6; ++i) wait_request_done(srv.url, "req-" + std::to_string(i));
    RunResult fin = sync_once(db, srv.url);
    INFO(last.out << "\n---\n" << fin.out);
    CHECK(fin.code == 0);
    {
        sqlite3* raw = nullptr;
        REQUIRE(sqlite3_open_v2(db.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
        sqlite3_stmt* st = nullptr;
        REQUIRE(sqlite3_prepare_v2(raw, "PRAGMA integrity_check", -1, &st, nullptr) == SQLITE_OK);
        REQUIRE(sqlite3_step(st) == SQLITE_ROW);
        CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 0))) == "ok");
        sqlite3_finalize(st);
        sqlite3_close(raw);
        tandem::MemoryStoreParams p;
        p.path = db;
        tandem::MemoryStore store(p);
        CHECK(store.stats().n_outbox_pending == 0);
        tandem::OutboxRequest q;
        for (int i = 0; i < 6; ++i) CHECK(store.outbox_get("req-" + std::to_string(i), &q));
    }
    check_exactly_once(db, server_items(srv.url));
}

// ---- tenants, documents, epochs ------------------------------------------------------------

namespace {

const char* kAliceToken = "alice-sync-token-0123456789";
const char* kBobToken = "bob-sync-token-0123456789";

std::vector<std::string> tenants_auth(const TempDir& tmp) {
    tandem_test::write_file(tmp.file("tokens"), std::string("alice ") + kAliceToken + "\nbob " + kBobToken + "\n");
    REQUIRE(chmod(tmp.file("tokens").c_str(), 0600) == 0);
    return {"--tokens", tmp.file("tokens")};
}

std::set<std::string> ids_of(const std::map<std::string, std::pair<std::string, std::string>>& items) {
    std::set<std::string> out;
    for (const auto& kv : items) out.insert(kv.first);
    return out;
}

}  // namespace

TEST_CASE("tandem sync: two tenants syncing at once each get exactly their own notes") {
    TempDir tmp;
    write_corpus(tmp);
    CloudServer srv(tmp, "", tenants_auth(tmp));
    const std::string da = tmp.file("alice.db"), db = tmp.file("bob.db");
    // The same request id in both tenants: two requests.
    enqueue(da, "req-1", "rising sea levels and small island states");
    enqueue(db, "req-1", "nuclear weapons treaty verification and inspections");
    enqueue(da, "req-2", "Paris Agreement warming two degrees");
    enqueue(db, "req-2", "tariffs on agricultural exports");
    std::string outputs;
    for (int round = 0; round < 3; ++round) {  // concurrent passes, repeated: nothing crosses, nothing doubles
        Proc pa(sync_argv(da, srv.url, {"--wait", "5"}, kAliceToken));
        Proc pb(sync_argv(db, srv.url, {"--wait", "5"}, kBobToken));
        const int ca = pa.wait_exit(60000), cb = pb.wait_exit(60000);
        outputs += "--- alice\n" + pa.out + "--- bob\n" + pb.out;
        CHECK(ca == 0);
        CHECK(cb == 0);
        if (round == 0) {
            for (const char* id : {"req-1", "req-2"}) {
                wait_request_done(srv.url, id, kAliceToken);
                wait_request_done(srv.url, id, kBobToken);
            }
        }
    }
    INFO(outputs);
    const auto want_a = server_items(srv.url, kAliceToken), want_b = server_items(srv.url, kBobToken);
    REQUIRE(!want_a.empty());
    REQUIRE(!want_b.empty());
    check_exactly_once(da, want_a);
    check_exactly_once(db, want_b);
    for (const auto& id : ids_of(want_a)) CHECK(want_b.count(id) == 0);
    CHECK(outputs.find(kAliceToken) == std::string::npos);
    CHECK(outputs.find(kBobToken) == std::string::npos);
}

TEST_CASE("tandem sync: forgetting a document reaches every client of the tenant, and only its notes") {
    TempDir tmp;
    write_corpus(tmp);
    CloudServer srv(tmp, "", tenants_auth(tmp));
    const std::string laptop = tmp.file("laptop.db"), desktop = tmp.file("desktop.db");
    enqueue(laptop, "req-speech", "rising sea levels and small island states", "speech.md");
    enqueue(laptop, "req-memo", "nuclear weapons treaty verification", "memo.md");
    REQUIRE(sync_once(laptop, srv.url, {"--wait", "5"}, kAliceToken).code == 0);
    wait_request_done(srv.url, "req-speech", kAliceToken);
    wait_request_done(srv.url, "req-memo", kAliceToken);
    REQUIRE(sync_once(laptop, srv.url, {}, kAliceToken).code == 0);
    REQUIRE(sync_once(desktop, srv.url, {}, kAliceToken).code == 0);  // the same tenant's other device
    const auto before = server_items(srv.url, kAliceToken);
    check_exactly_once(laptop, before);
    check_exactly_once(desktop, before);

    auto del = http("DELETE", srv.url + "/v1/memory/documents/speech.md", kAliceToken);
    REQUIRE(del.first == 200);
    for (const std::string& dbp : {laptop, desktop}) {
        RunResult r = sync_once(dbp, srv.url, {}, kAliceToken);
        INFO(r.out);
        CHECK(r.code == 0);
        CHECK(r.out.find("0 item(s), " + std::to_string(json::parse(del.second)["deleted"].get<int>()) + " tombstone(s)") !=
              std::string::npos);
    }
    const auto after = server_items(srv.url, kAliceToken);
    REQUIRE(!after.empty());
    CHECK(after.size() < before.size());
    check_exactly_once(laptop, after);
    check_exactly_once(desktop, after);
    tandem::MemoryStoreParams p;
    p.path = desktop;
    tandem::MemoryStore store(p);
    for (const auto& kv : after) {
        tandem::MemoryItem it;
        REQUIRE(store.get(kv.first, &it));
        CHECK(it.document == "memo.md");
    }
}

TEST_CASE("tandem sync: a cloud reset under a synced client: it says so, starts over and gets the new notes") {
    TempDir tmp;
    write_corpus(tmp);
    const std::string db = tmp.file("client.db");
    int port = 0;
    std::set<std::string> old_ids;
    {
        CloudServer srv(tmp);
        port = std::stoi(srv.url.substr(srv.url.rfind(':') + 1));
        enqueue(db, "req-old", "rising sea levels and small island states");
        REQUIRE(sync_once(db, srv.url, {"--wait", "5"}).code == 0);
        wait_request_done(srv.url, "req-old");
        REQUIRE(sync_once(db, srv.url).code == 0);
        old_ids = ids_of(server_items(srv.url));
        check_exactly_once(db, server_items(srv.url));
    }
    // The database is lost; the cloud comes back on the same URL with an empty feed.
    for (const char* f : {"cloud.db", "cloud.db-wal", "cloud.db-shm"}) std::remove(tmp.file(f).c_str());
    CloudServer srv(tmp, "", {"--token", "e2e-token"}, port);
    REQUIRE(srv.url == "http://127.0.0.1:" + std::to_string(port));
    enqueue(db, "req-new", "nuclear weapons treaty verification and inspections");
    RunResult r = sync_once(db, srv.url, {"--wait", "5"});
    INFO(r.out);
    CHECK(r.code == 0);
    CHECK(r.out.find("from another epoch") != std::string::npos);
    CHECK(r.out.find("dropped " + std::to_string(old_ids.size()) + " local note(s)") != std::string::npos);
    wait_request_done(srv.url, "req-new");
    RunResult again = sync_once(db, srv.url);
    INFO(again.out);
    CHECK(again.code == 0);
    CHECK(again.out.find("another epoch") == std::string::npos);
    const auto now = server_items(srv.url);
    REQUIRE(!now.empty());
    for (const auto& kv : now) CHECK(kv.second.first == "req-new");
    check_exactly_once(db, now);  // the old epoch's notes are gone, the new ones arrived
}
