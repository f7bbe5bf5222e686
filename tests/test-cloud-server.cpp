// tandem-cloud: the real binary (TANDEM_CLOUD_BIN) on a loopback port, spoken to over raw
// sockets. Idempotent requests, the change feed, long poll, tombstones, auth, 400/404/413/501,
// health, fault injection, the UNGD corpus and SIGTERM shutdown.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <future>
#include <nlohmann/json.hpp>
#include <map>
#include <regex>
#include <set>
#include <thread>

#include "raw_http.h"
#include "test_util.h"

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using tandem_test::http;
using tandem_test::Resp;
using tandem_test::TempDir;

// ---- the server process ----------------------------------------------------------------

// Starts tandem-cloud with args, reads "listening on http://127.0.0.1:PORT" from its stdout.
struct ServerProc {
    pid_t pid = -1;
    int port = 0;
    int out_fd = -1;
    std::string first_line;

    // merge_stderr: stderr goes to the same pipe (read it with read_all).
    explicit ServerProc(const std::vector<std::string>& args, bool expect_listen = true, bool merge_stderr = false) {
        int fds[2];
        REQUIRE(pipe(fds) == 0);
        pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            dup2(fds[1], 1);
            if (merge_stderr) dup2(fds[1], 2);
            close(fds[0]);
            close(fds[1]);
            std::vector<char*> argv;
            std::string bin = TANDEM_CLOUD_BIN;
            argv.push_back(bin.data());
            std::vector<std::string> copy = args;
            for (std::string& a : copy) argv.push_back(a.data());
            argv.push_back(nullptr);
            execv(bin.c_str(), argv.data());
            _exit(127);
        }
        close(fds[1]);
        out_fd = fds[0];
        if (!expect_listen) return;
        first_line = read_line(60000);
        std::smatch m;
        INFO("first stdout line: " << first_line);
        REQUIRE(std::regex_search(first_line, m, std::regex("^listening on http://127\\.0\\.0\\.1:([0-9]+)$")));
        port = std::stoi(m[1]);
        REQUIRE(port > 0);
    }

    std::string read_line(int timeout_ms) {
        std::string line;
        auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
        while (Clock::now() < deadline) {
            pollfd p{out_fd, POLLIN, 0};
            if (poll(&p, 1, 100) <= 0) continue;
            char c;
            if (read(out_fd, &c, 1) != 1) break;
            if (c == '\n') return line;
            line += c;
        }
        return line;
    }

    // Everything written until the pipe closes (the process exits) or timeout_ms.
    std::string read_all(int timeout_ms) {
        std::string all;
        auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
        while (Clock::now() < deadline) {
            pollfd p{out_fd, POLLIN, 0};
            if (poll(&p, 1, 100) <= 0) continue;
            char buf[4096];
            ssize_t n = read(out_fd, buf, sizeof buf);
            if (n <= 0) break;
            all.append(buf, (size_t)n);
        }
        return all;
    }

    // Waits up to timeout_ms for the process to exit; returns its wait status or -1.
    int wait_exit(int timeout_ms) {
        auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
        while (Clock::now() < deadline) {
            int status = 0;
            if (waitpid(pid, &status, WNOHANG) == pid) {
                pid = -1;
                return status;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return -1;
    }

    ~ServerProc() {
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
        }
        if (out_fd >= 0) close(out_fd);
    }
};

// ---- fixtures --------------------------------------------------------------------------

static void write_corpus(const TempDir& tmp) {
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
    tandem_test::write_file(dir + "/ignored.csv", "sea,levels,island\n");
}

static std::vector<std::string> base_args(const TempDir& tmp) {
    return {"--port", "0", "--corpus", tmp.file("corpus"), "--db", tmp.file("cloud.db")};
}

// Polls the request's state until done (or 10 s).
static void wait_done(int port, const std::string& id, const std::string& token = "") {
    auto deadline = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < deadline) {
        Resp r = http(port, "GET", "/v1/memory/requests/" + id, "", token);
        if (r.status == 200 && r.j()["state"] == "done") return;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL("request " << id << " not done in 10 s");
}

static json mem_request(const std::string& id, const std::string& context, int max_items = 3) {
    return {{"request_id", id}, {"context", context}, {"max_items", max_items}};
}

// ---- tests -----------------------------------------------------------------------------

TEST_CASE("tandem-cloud: health, idempotent memory requests and the change feed") {
    TempDir tmp;
    write_corpus(tmp);
    ServerProc srv(base_args(tmp));
    Resp h = http(srv.port, "GET", "/health");
    REQUIRE(h.status == 200);
    CHECK(h.j()["status"] == "ok");
    CHECK(h.j()["docs"] == 2);  // the .csv is not part of the corpus

    std::string body = mem_request("r1", "What about sea levels and small island states?").dump();
    Resp a = http(srv.port, "POST", "/v1/memory/requests", body);
    CHECK(a.status == 202);
    CHECK(a.j()["status"] == "accepted");
    Resp b = http(srv.port, "POST", "/v1/memory/requests", body);
    CHECK(b.status == 202);
    CHECK(b.j()["status"] == "duplicate");
    wait_done(srv.port, "r1");

    Resp f = http(srv.port, "GET", "/v1/memory/changes?since=0&limit=100");
    REQUIRE(f.status == 200);
    json page = f.j();
    REQUIRE(page["items"].is_array());
    REQUIRE(page["items"].size() >= 1);
    CHECK(page["items"].size() <= 3);
    std::set<std::string> ids;
    for (const json& it : page["items"]) {
        CHECK(it["request_id"] == "r1");
        CHECK(it["method"] == "extractive");
        CHECK(it["source"]["doc_id"] == "climate.txt");
        CHECK(it["source"]["title"] == "climate");
        CHECK(it["created_at"].get<int64_t>() > 1600000000000LL);
        CHECK(ids.insert(it["id"].get<std::string>()).second);
    }
    CHECK(page["items"][0]["text"].get<std::string>().find("island") != std::string::npos);
    std::string cursor = page["next_cursor"];

    // Nothing new after the cursor; a duplicate POST created nothing.
    Resp g = http(srv.port, "GET", "/v1/memory/changes?since=" + cursor);
    CHECK(g.j()["items"].empty());
    CHECK(g.j()["next_cursor"] == cursor);
    // Paging: limit=1 walks the same items one by one.
    std::string c = "0";
    for (size_t i = 0; i < page["items"].size(); i++) {
        json p = http(srv.port, "GET", "/v1/memory/changes?since=" + c + "&limit=1").j();
        REQUIRE(p["items"].size() == 1);
        CHECK(p["items"][0]["id"] == page["items"][i]["id"]);
        c = p["next_cursor"];
    }
    CHECK(c == cursor);

    // Same id, other context: a conflict, not a second request.
    CHECK(http(srv.port, "POST", "/v1/memory/requests", mem_request("r1", "nuclear").dump()).status == 409);

    // A tombstone retracts an item: exactly {id, deleted}.
    std::string victim = page["items"][0]["id"];
    Resp d = http(srv.port, "DELETE", "/v1/memory/items/" + victim);
    CHECK(d.status == 200);
    CHECK(http(srv.port, "DELETE", "/v1/memory/items/" + victim).status == 404);
    json t = http(srv.port, "GET", "/v1/memory/changes?since=" + cursor).j();
    REQUIRE(t["items"].size() == 1);
    CHECK(t["items"][0] == json({{"id", victim}, {"deleted", true}}));

    // The feed survives a restart, and the same request id is still a duplicate. From the
    // start, the retracted item is left out (its text is erased); its tombstone is there.
    kill(srv.pid, SIGTERM);
    REQUIRE(srv.wait_exit(5000) >= 0);
    ServerProc again(base_args(tmp));
    json all = http(again.port, "GET", "/v1/memory/changes?since=0").j();
    CHECK(all["items"].size() == page["items"].size());
    CHECK(all["items"].back() == json({{"id", victim}, {"deleted", true}}));
    CHECK(http(again.port, "POST", "/v1/memory/requests", body).j()["status"] == "duplicate");
}

// Percent-encodes everything but unreserved characters (RFC 3986), for paths and queries.
static std::string pct(const std::string& s) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') out += (char)c;
        else out += {'%', hex[c >> 4], hex[c & 15]};
    }
    return out;
}

TEST_CASE("tandem-cloud: /v1/sources gives the passage a note came from") {
    TempDir tmp;
    std::string dir = tmp.file("corpus");
    REQUIRE(mkdir(dir.c_str(), 0755) == 0);
    // Two paragraphs of ~500 characters: two passages (a line break ends a half-full passage).
    std::string farms, seas;
    for (int i = 0; i < 6; i++)
        farms += "Farmers in the highlands harvest wheat and barley on terraces built by hand, season " +
                 std::to_string(i) + ". ";
    for (int i = 0; i < 6; i++)
        seas += "Coral reefs bleach as the warming ocean turns acidic and fisheries collapse, year " +
                std::to_string(i) + ". ";
    tandem_test::write_file(dir + "/farm and sea.txt", farms + "\n" + seas + "\n");
    ServerProc srv({"--port", "0", "--corpus", dir, "--db", tmp.file("cloud.db")});
    const std::string base = "/v1/sources/" + pct("farm and sea.txt");

    // An extractive note: the passage holding its sentence (a shortened note's "..." ignored).
    Resp a = http(srv.port, "GET", base + "?note=" + pct("Coral reefs bleach as the warming ocean turns..."));
    REQUIRE(a.status == 200);
    CHECK(a.j()["doc_id"] == "farm and sea.txt");
    CHECK(a.j()["title"] == "farm and sea");
    CHECK(a.j()["count"] == 2);
    CHECK(a.j()["index"] == 1);
    CHECK(a.j()["passage"].get<std::string>().find("Coral reefs bleach") == 0);
    // A note in other words: the passage sharing the most word stems.
    Resp b = http(srv.port, "GET", base + "?note=" + pct("The key point is that warmer oceans bleach reefs and end fisheries."));
    REQUIRE(b.status == 200);
    CHECK(b.j()["index"] == 1);
    CHECK(http(srv.port, "GET", base + "?note=" + pct("Terraces built by farmers feed the highlands.")).j()["index"] == 0);
    // No note: the first passage. Unknown document: 404. Wrong method: 405.
    CHECK(http(srv.port, "GET", base).j()["index"] == 0);
    Resp c = http(srv.port, "GET", "/v1/sources/nope.txt?note=x");
    CHECK(c.status == 404);
    CHECK(c.j()["error"]["message"].get<std::string>().find("nope.txt") != std::string::npos);
    CHECK(http(srv.port, "GET", "/v1/sources/").status == 404);
    CHECK(http(srv.port, "POST", base, "{}").status == 405);
}

TEST_CASE("tandem-cloud: long poll waits for new items, or for the timeout") {
    TempDir tmp;
    write_corpus(tmp);
    ServerProc srv(base_args(tmp));
    Resp idle = http(srv.port, "GET", "/v1/memory/changes?since=0&wait=1");
    CHECK(idle.status == 200);
    CHECK(idle.j()["items"].empty());
    CHECK(idle.seconds >= 0.9);
    CHECK(idle.seconds < 5);

    auto poll = std::async(std::launch::async, [&] { return http(srv.port, "GET", "/v1/memory/changes?since=0&wait=20"); });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    CHECK(http(srv.port, "POST", "/v1/memory/requests", mem_request("lp", "nuclear weapons treaty").dump()).status == 202);
    Resp r = poll.get();
    REQUIRE(r.status == 200);
    CHECK(r.seconds < 10);
    REQUIRE(r.j()["items"].size() >= 1);
    CHECK(r.j()["items"][0]["source"]["doc_id"] == "nuclear.md");
}

TEST_CASE("tandem-cloud: bearer auth, bad requests, size limit, unknown routes, chat 501") {
    TempDir tmp;
    write_corpus(tmp);
    std::vector<std::string> args = base_args(tmp);
    args.insert(args.end(), {"--token", "s3cret", "--max-body", "4096"});
    ServerProc srv(args);
    CHECK(http(srv.port, "GET", "/health").status == 200);  // liveness needs no token
    Resp no = http(srv.port, "GET", "/v1/memory/changes");
    CHECK(no.status == 401);
    CHECK(no.j()["error"]["type"] == "authentication_error");
    CHECK(no.headers["www-authenticate"] == "Bearer");
    CHECK(http(srv.port, "GET", "/v1/memory/changes", "", "wrong").status == 401);
    CHECK(http(srv.port, "GET", "/v1/memory/changes", "", "s3cret").status == 200);

    Resp bad = http(srv.port, "POST", "/v1/memory/requests", "{\"request_id\": ", "s3cret");
    CHECK(bad.status == 400);
    CHECK(bad.j()["error"]["message"].get<std::string>().find("malformed JSON") != std::string::npos);
    CHECK(http(srv.port, "POST", "/v1/memory/requests", "[1,2]", "s3cret").status == 400);
    // a number no double holds is the client's error (400), not the server's (500)
    Resp huge = http(srv.port, "POST", "/v1/memory/requests", R"({"request_id": "h", "context": "x", "max_items": 1e999})",
                     "s3cret");
    CHECK(huge.status == 400);
    CHECK(huge.j()["error"]["message"] == "malformed JSON: a number in the request body is too large for a double");
    CHECK(http(srv.port, "POST", "/v1/memory/requests", "{\"context\": \"x\"}", "s3cret").status == 400);
    CHECK(http(srv.port, "POST", "/v1/memory/requests", mem_request("x", "y", 0).dump(), "s3cret").status == 400);
    CHECK(http(srv.port, "GET", "/v1/memory/changes?since=abc", "", "s3cret").status == 400);
    CHECK(http(srv.port, "GET", "/v1/memory/changes?limit=0", "", "s3cret").status == 400);
    CHECK(http(srv.port, "GET", "/v1/memory/changes?wait=-1", "", "s3cret").status == 400);

    Resp big = http(srv.port, "POST", "/v1/memory/requests", mem_request("big", std::string(10000, 'a')).dump(), "s3cret");
    CHECK(big.status == 413);
    CHECK(big.j()["error"]["message"].get<std::string>().find("4096") != std::string::npos);
    Resp big100 = http(srv.port, "POST", "/v1/memory/requests", mem_request("big", std::string(10000, 'a')).dump(),
                       "s3cret", "Expect: 100-continue\r\n");
    CHECK(big100.status == 413);

    CHECK(http(srv.port, "GET", "/nope", "", "s3cret").status == 404);
    CHECK(http(srv.port, "GET", "/admin/faults", "", "s3cret").status == 404);  // no --enable-admin
    CHECK(http(srv.port, "PUT", "/v1/memory/requests", "{}", "s3cret").status == 405);
    Resp chat = http(srv.port, "POST", "/v1/chat/completions", "{\"messages\": []}", "s3cret");
    CHECK(chat.status == 501);
    CHECK(chat.j()["error"]["type"] == "not_implemented");
    CHECK(http(srv.port, "GET", "/health").j()["status"] == "ok");  // still serving
}

TEST_CASE("tandem-cloud: injected faults, in queue order") {
    TempDir tmp;
    write_corpus(tmp);
    std::vector<std::string> args = base_args(tmp);
    args.insert(args.end(), {"--enable-admin", "--faults", "/v1/memory/requests=drop"});
    ServerProc srv(args);
    // drop on POST: the client sees a short body, but the request was processed.
    std::string body = mem_request("f1", "island states").dump();
    Resp dropped = http(srv.port, "POST", "/v1/memory/requests", body);
    CHECK(dropped.status == 202);
    CHECK(dropped.body.size() < dropped.content_length);
    CHECK(http(srv.port, "POST", "/v1/memory/requests", body).j()["status"] == "duplicate");
    wait_done(srv.port, "f1");

    json spec = {{"path", "/v1/memory/changes"},
                 {"faults", {"429:7", "503", "truncate", "badjson", "delay:400", "reset", "drop"}}};
    Resp set = http(srv.port, "POST", "/admin/faults", spec.dump());
    REQUIRE(set.status == 200);
    CHECK(set.j()["faults"]["/v1/memory/changes"].size() == 7);
    CHECK(http(srv.port, "POST", "/admin/faults", "{\"path\": \"/x\", \"faults\": [\"bogus\"]}").status == 400);

    const std::string target = "/v1/memory/changes?since=0";
    Resp r429 = http(srv.port, "GET", target);
    CHECK(r429.status == 429);
    CHECK(r429.headers["retry-after"] == "7");
    CHECK(http(srv.port, "GET", target).status == 503);
    Resp tr = http(srv.port, "GET", target);
    CHECK(tr.status == 200);
    CHECK(tr.body.size() == tr.content_length);
    CHECK_THROWS(tr.j());
    Resp bj = http(srv.port, "GET", target);
    CHECK(bj.status == 200);
    CHECK_THROWS(bj.j());
    Resp slow = http(srv.port, "GET", target);
    CHECK(slow.status == 200);
    CHECK(slow.seconds >= 0.39);
    CHECK(slow.j()["items"].size() >= 1);
    Resp reset = http(srv.port, "GET", target);
    CHECK(reset.status == 0);
    CHECK(reset.body.empty());
    Resp drop = http(srv.port, "GET", target);
    CHECK(drop.status == 200);
    CHECK(drop.body.size() < drop.content_length);
    // The queue is empty again: normal service.
    Resp ok = http(srv.port, "GET", target);
    CHECK(ok.status == 200);
    CHECK(ok.j()["items"].size() >= 1);
    CHECK(http(srv.port, "GET", "/admin/faults").j()["faults"].empty());
}

TEST_CASE("tandem-cloud: SIGTERM answers a waiting long poll and exits 0") {
    TempDir tmp;
    write_corpus(tmp);
    ServerProc srv(base_args(tmp));
    auto poll = std::async(std::launch::async, [&] { return http(srv.port, "GET", "/v1/memory/changes?wait=25"); });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    REQUIRE(kill(srv.pid, SIGTERM) == 0);
    Resp r = poll.get();
    CHECK(r.status == 200);
    CHECK(r.seconds < 5);
    int status = srv.wait_exit(5000);
    REQUIRE(status >= 0);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("tandem-cloud: a missing --model file, a bad corpus and bad flags fail") {
    TempDir tmp;
    write_corpus(tmp);
    {
        std::vector<std::string> args = base_args(tmp);
        args.insert(args.end(), {"--model", "x.gguf"});
        ServerProc p(args, false);
        int st = p.wait_exit(10000);
        REQUIRE(st >= 0);
        CHECK(WEXITSTATUS(st) == 1);  // the engine cannot open x.gguf (stderr names it)
    }
    {
        ServerProc p({"--port", "0", "--corpus", tmp.file("missing"), "--db", tmp.file("x.db")}, false);
        int st = p.wait_exit(10000);
        REQUIRE(st >= 0);
        CHECK(WEXITSTATUS(st) == 1);
    }
    {
        ServerProc p({"--port", "0", "--corpus", tmp.file("corpus"), "--db", tmp.file("x.db"), "--faults", "/a=nope"}, false);
        int st = p.wait_exit(10000);
        REQUIRE(st >= 0);
        CHECK(WEXITSTATUS(st) == 2);
    }
    // a speech whose year does not fit an int: the line and the field are named
    tandem_test::write_file(tmp.file("big.jsonl"),
                            R"({"id":"A_1_1946","country":"A","year":1946,"session":1,"text":"Peace."})" "\n"
                            R"({"id":"B_1_1946","country":"B","year":4294967297,"session":1,"text":"War."})" "\n");
    {
        ServerProc p({"--port", "0", "--corpus", tmp.file("big.jsonl"), "--db", tmp.file("y.db")}, false, true);
        const std::string out = p.read_all(10000);
        INFO(out);
        CHECK(out.find("big.jsonl: line 2: field 'year' is out of range (4294967297)") != std::string::npos);
        int st = p.wait_exit(10000);
        REQUIRE(st >= 0);
        CHECK(WEXITSTATUS(st) == 1);
    }
}

TEST_CASE("tandem-cloud: the UNGD corpus (.jsonl.xz) with --max-year") {
    std::string corpus = tandem_test::shared_path("corpus/ungd.jsonl.xz");
    REQUIRE_MESSAGE(access(corpus.c_str(), R_OK) == 0, "missing test data " << corpus);
    TempDir tmp;
    ServerProc srv({"--port", "0", "--corpus", corpus, "--db", tmp.file("ungd.db"), "--max-year", "1947"});
    json h = http(srv.port, "GET", "/health").j();
    CHECK(h["docs"].get<int>() > 50);
    CHECK(h["docs"].get<int>() < 200);
    REQUIRE(http(srv.port, "POST", "/v1/memory/requests", mem_request("u1", "the control of atomic energy", 4).dump()).status == 202);
    wait_done(srv.port, "u1");
    json page = http(srv.port, "GET", "/v1/memory/changes").j();
    REQUIRE(page["items"].size() >= 1);
    for (const json& it : page["items"]) {
        std::string title = it["source"]["title"];
        INFO(title);
        CHECK(std::regex_match(title, std::regex("[A-Z]{3} 194[67] \\(UNGA [12]\\)")));
        std::string text = it["text"];
        CHECK(text.size() <= 280);
        // Its source passage holds the (extractive) note's sentence.
        Resp src = http(srv.port, "GET", "/v1/sources/" + pct(it["source"]["doc_id"]) + "?note=" + pct(text));
        REQUIRE(src.status == 200);
        CHECK(src.j()["title"] == title);
        if (text.size() > 3 && text.substr(text.size() - 3) == "...") text.resize(text.size() - 3);
        CHECK(src.j()["passage"].get<std::string>().find(text) != std::string::npos);
    }
}

// ---- tenants -----------------------------------------------------------------------------

static const char* kAlice = "alice-token-0123456789";
static const char* kAlice2 = "alice-laptop-0123456789";  // a second token of the same tenant
static const char* kBob = "bob-token-0123456789abc";

static std::vector<std::string> tenant_args(const TempDir& tmp) {
    tandem_test::write_file(tmp.file("tokens"), std::string("# tenant token\nalice ") + kAlice + "\n\nbob " + kBob +
                                                    "\nalice " + kAlice2 + "\n");
    REQUIRE(chmod(tmp.file("tokens").c_str(), 0600) == 0);
    std::vector<std::string> args = base_args(tmp);
    args.insert(args.end(), {"--tokens", tmp.file("tokens")});
    return args;
}

// The whole feed of the caller from the start: items and tombstones, and the last cursor.
static json whole_feed(int port, const std::string& token, std::string* cursor = nullptr) {
    json page = http(port, "GET", "/v1/memory/changes?limit=1000", "", token).j();
    if (cursor) *cursor = page["next_cursor"];
    return page["items"];
}

// The position in a cursor "<epoch>-<seq>-<tag>".
static int cursor_seq(const std::string& c) {
    const size_t a = c.find('-'), b = c.find('-', a + 1);
    return std::stoi(c.substr(a + 1, b - a - 1));
}

TEST_CASE("tandem-cloud tenants: two tenants never see, count or guess each other's notes") {
    TempDir tmp;
    write_corpus(tmp);
    ServerProc srv(tenant_args(tmp));
    // The same request_id in two tenants is two requests.
    CHECK(http(srv.port, "POST", "/v1/memory/requests", mem_request("r1", "sea levels and small island states").dump(), kAlice)
              .j()["status"] == "accepted");
    CHECK(http(srv.port, "POST", "/v1/memory/requests", mem_request("r1", "nuclear weapons treaty inspections").dump(), kBob)
              .j()["status"] == "accepted");
    wait_done(srv.port, "r1", kAlice);
    wait_done(srv.port, "r1", kBob);
    std::string ca, cb;
    const json a = whole_feed(srv.port, kAlice, &ca), b = whole_feed(srv.port, kBob, &cb);
    REQUIRE(!a.empty());
    REQUIRE(!b.empty());
    for (const json& it : a) CHECK(it["source"]["doc_id"] == "climate.txt");
    for (const json& it : b) CHECK(it["source"]["doc_id"] == "nuclear.md");
    CHECK(whole_feed(srv.port, kAlice2) == a);  // alice's other token: the same tenant
    // Positions count each tenant's own entries only; ids are random.
    CHECK(cursor_seq(ca) == (int)a.size());
    CHECK(cursor_seq(cb) == (int)b.size());
    const std::string alice_item = a[0]["id"];
    CHECK(alice_item.size() == 34);

    // Bob with alice's cursor: not honoured (it names no entry of his feed), so he gets his
    // own feed from the start, and nothing of hers.
    json bp = http(srv.port, "GET", "/v1/memory/changes?since=" + ca, "", kBob).j();
    CHECK(bp["reset"] == true);
    CHECK(bp["items"] == b);
    // Bob cannot delete or look up alice's things: the same 404 as for ids that never existed.
    Resp del = http(srv.port, "DELETE", "/v1/memory/items/" + alice_item, "", kBob);
    Resp none = http(srv.port, "DELETE", "/v1/memory/items/m-00000000000000000000000000000000", "", kBob);
    CHECK(del.status == 404);
    CHECK(none.status == 404);
    CHECK(del.j()["error"]["code"] == none.j()["error"]["code"]);
    CHECK(http(srv.port, "POST", "/v1/memory/requests", mem_request("a-only", "island states").dump(), kAlice).status == 202);
    CHECK(http(srv.port, "GET", "/v1/memory/requests/a-only", "", kBob).status == 404);
    // Health: counts of the caller's own feed; nothing per tenant without a token.
    json hb = http(srv.port, "GET", "/health", "", kBob).j();
    CHECK(hb["tenant"] == "bob");
    CHECK(hb["feed_head"] == cb);
    json anon = http(srv.port, "GET", "/health").j();
    CHECK(!anon.contains("feed_head"));
    CHECK(!anon.contains("pending"));
    // Bob forgets everything: alice's feed does not change.
    wait_done(srv.port, "a-only", kAlice);
    const json a2 = whole_feed(srv.port, kAlice);
    json forgot = http(srv.port, "DELETE", "/v1/memory/items", "", kBob).j();
    CHECK(forgot["deleted"] == b.size());
    CHECK(whole_feed(srv.port, kAlice) == a2);
    for (const json& it : whole_feed(srv.port, kBob)) CHECK(it["deleted"] == true);  // only tombstones left
    // Unknown and missing tokens.
    CHECK(http(srv.port, "GET", "/v1/memory/changes", "", "carol-token-0123456789").status == 401);
    Resp no = http(srv.port, "GET", "/v1/memory/changes");
    CHECK(no.status == 401);
    CHECK(no.j()["error"]["code"] == "invalid_api_key");
}

TEST_CASE("tandem-cloud tenants: a document's notes, then all notes, are forgotten through the feed") {
    TempDir tmp;
    write_corpus(tmp);
    ServerProc srv(tenant_args(tmp));
    json ra = mem_request("ra", "sea levels and small island states");
    ra["document"] = "draft one/ä";
    json rb = mem_request("rb", "nuclear weapons treaty inspections");
    rb["document"] = "draft-two";
    REQUIRE(http(srv.port, "POST", "/v1/memory/requests", ra.dump(), kAlice).status == 202);
    REQUIRE(http(srv.port, "POST", "/v1/memory/requests", rb.dump(), kAlice).status == 202);
    wait_done(srv.port, "ra", kAlice);
    wait_done(srv.port, "rb", kAlice);
    std::string cursor;
    const json all = whole_feed(srv.port, kAlice, &cursor);
    std::set<std::string> one, two;
    for (const json& it : all) (it["document"] == "draft one/ä" ? one : two).insert(it["id"].get<std::string>());
    REQUIRE(!one.empty());
    REQUIRE(!two.empty());
    CHECK(http(srv.port, "GET", "/v1/memory/requests/ra", "", kAlice).j()["document"] == "draft one/ä");

    json f = http(srv.port, "DELETE", "/v1/memory/documents/draft%20one%2F%C3%A4", "", kAlice).j();
    CHECK(f["deleted"] == one.size());
    CHECK(f["document"] == "draft one/ä");
    json page = http(srv.port, "GET", "/v1/memory/changes?since=" + cursor, "", kAlice).j();
    std::set<std::string> gone;
    for (const json& it : page["items"]) {
        CHECK(it == json({{"id", it["id"]}, {"deleted", true}}));
        gone.insert(it["id"].get<std::string>());
    }
    CHECK(gone == one);
    CHECK(http(srv.port, "DELETE", "/v1/memory/documents/draft%20one%2F%C3%A4", "", kAlice).j()["deleted"] == 0);
    CHECK(http(srv.port, "DELETE", "/v1/memory/items/", "", kAlice).status == 404);  // no id: not "everything"
    CHECK(http(srv.port, "DELETE", "/v1/memory/items", "", kAlice).j()["deleted"] == two.size());
    // From the start, no forgotten text is served any more.
    const json left = whole_feed(srv.port, kAlice);
    CHECK(left.size() == one.size() + two.size());
    for (const json& it : left) CHECK(it.size() == 2);
}

TEST_CASE("tandem-cloud tenants: unauthenticated only on loopback; bad tokens files name the line") {
    TempDir tmp;
    write_corpus(tmp);
    auto start_fails = [&](std::vector<std::string> extra, const std::string& want) {
        std::vector<std::string> args = base_args(tmp);
        args.insert(args.end(), extra.begin(), extra.end());
        ServerProc p(args, false, true);
        const std::string out = p.read_all(10000);
        INFO(out);
        CHECK(out.find(want) != std::string::npos);
        const int st = p.wait_exit(10000);
        REQUIRE(st >= 0);
        CHECK(WEXITSTATUS(st) == 2);
    };
    start_fails({"--host", "0.0.0.0"}, "refusing to serve 0.0.0.0 without authentication");
    tandem_test::write_file(tmp.file("t1"), "alice a-token-0123456789abcdef\nbob\n");
    start_fails({"--tokens", tmp.file("t1")}, "t1:2: want 'TENANT TOKEN', found one field");
    tandem_test::write_file(tmp.file("t2"), "alice same-token-0123456789\nbob same-token-0123456789\n");
    start_fails({"--tokens", tmp.file("t2")}, "t2:2: this token is already given on line 1");
    tandem_test::write_file(tmp.file("t3"), "al/ice a-token-0123456789abcdef\n");
    start_fails({"--tokens", tmp.file("t3")}, "t3:1: a tenant name may hold only");
    start_fails({"--tokens", tmp.file("missing")}, "cannot be read");
    start_fails({"--tokens", tmp.file("t1"), "--token", "x"}, "not both");
    {
        // --insecure-no-auth: it starts, and says so.
        std::vector<std::string> args = base_args(tmp);
        args.insert(args.end(), {"--host", "0.0.0.0", "--insecure-no-auth"});
        ServerProc p(args, false);
        CHECK(p.read_line(60000).rfind("listening on http://0.0.0.0:", 0) == 0);
    }
    {
        // A short token works but is warned about; a readable tokens file too.
        tandem_test::write_file(tmp.file("t4"), "alice short\n");
        REQUIRE(chmod(tmp.file("t4").c_str(), 0644) == 0);
        std::vector<std::string> args = base_args(tmp);
        args.insert(args.end(), {"--tokens", tmp.file("t4")});
        ServerProc p(args, false, true);
        const std::string first = p.read_all(3000);
        CHECK(first.find("can be read by other users") != std::string::npos);
        CHECK(first.find("shorter than 16 characters") != std::string::npos);
    }
}

TEST_CASE("tandem-cloud tenants: a reset database gives a new epoch, and old cursors reset") {
    TempDir tmp;
    write_corpus(tmp);
    std::string cursor, epoch;
    {
        ServerProc srv(tenant_args(tmp));
        REQUIRE(http(srv.port, "POST", "/v1/memory/requests", mem_request("r1", "island states").dump(), kAlice).status == 202);
        wait_done(srv.port, "r1", kAlice);
        json p = http(srv.port, "GET", "/v1/memory/changes", "", kAlice).j();
        cursor = p["next_cursor"];
        epoch = p["epoch"];
        CHECK(p["reset"] == false);
        CHECK(http(srv.port, "GET", "/v1/memory/changes?since=" + cursor, "", kAlice).j()["reset"] == false);
        CHECK(http(srv.port, "GET", "/v1/memory/changes?since=nonsense", "", kAlice).status == 400);
    }
    REQUIRE(std::remove(tmp.file("cloud.db").c_str()) == 0);
    std::remove(tmp.file("cloud.db-wal").c_str());
    std::remove(tmp.file("cloud.db-shm").c_str());
    ServerProc srv(tenant_args(tmp));
    REQUIRE(http(srv.port, "POST", "/v1/memory/requests", mem_request("r2", "nuclear treaty").dump(), kAlice).status == 202);
    wait_done(srv.port, "r2", kAlice);
    // The old cursor names nothing here: the page starts over, at once (no long poll), says so.
    Resp r = http(srv.port, "GET", "/v1/memory/changes?wait=10&since=" + cursor, "", kAlice);
    CHECK(r.seconds < 5);
    json p = r.j();
    CHECK(p["reset"] == true);
    CHECK(p["epoch"] != epoch);
    REQUIRE(!p["items"].empty());
    CHECK(p["items"][0]["request_id"] == "r2");
    // A cursor of the feed before epochs (a decimal number) is from another epoch too.
    CHECK(http(srv.port, "GET", "/v1/memory/changes?since=5", "", kAlice).j()["reset"] == true);
}
