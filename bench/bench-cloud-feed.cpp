// bench-cloud-feed: the memory service under many clients (issue 18).
//
//   bench-cloud-feed [--clients 200] [--seconds 5] [--rounds 20] [--model GGUF]
//                    [--requests 8] [--repeat 2] [--year 2019] [--configs sqlite,pg1,pg2,llm]
//
// Configurations, each on its own fresh database, every process on this machine (loopback):
//   sqlite  one tandem-cloud on a SQLite file
//   pg1     one tandem-cloud on PostgreSQL (a throwaway server started here, tests/pg_server.h)
//   pg2     two tandem-cloud replicas on that PostgreSQL; clients alternate between them, as
//           behind a round-robin load balancer
// For each: (1) change-feed reads/s: every client reads its tenant's feed at the head
// (GET /v1/memory/changes?since=HEAD, an empty page: what a synced client asks most) back to
// back on its own keep-alive connection for --seconds; (2) long-poll wake-up: every client
// holds GET ...&wait=30 at the head, the bench deletes one note on the first replica and
// times each client's answer from the moment the DELETE was sent; --rounds times; p50/p99.
// All clients are one tenant (one user's devices), so that one change wakes all of them.
//
// llm: note-request throughput, --requests memory requests (max_items 2) produced by
// tandem-cloud --model GGUF (built in) and by tandem-cloud --llm-url pointing at a second
// tandem-cloud --model GGUF (upstream): time from the first POST until every request is done,
// the two alternating --repeat times.
//
// The clients are Boost.Beast sessions on one thread (no thread per client).
#include <sys/stat.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "../tests/http_call.h"
#include "../tests/pg_server.h"
#include "../tests/server_process.h"
#include "tandem/cloud/corpus.h"

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using tandem_test::http_call;
using tandem_test::ServerProcess;

namespace {

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    size_t i = (size_t)std::min<double>((double)v.size() - 1, p / 100.0 * (double)v.size());
    return v[i];
}

// ---- one client: a keep-alive connection making GETs one after another -------------------

class Client : public std::enable_shared_from_this<Client> {
public:
    Client(net::io_context& ioc, int port) : stream_(ioc), port_(port) {}

    // GET target; done(status, body) (status 0: transport error).
    void get(const std::string& target, std::function<void(int, const std::string&)> done) {
        done_ = std::move(done);
        req_ = {http::verb::get, target, 11};
        req_.set(http::field::host, "127.0.0.1");
        req_.keep_alive(true);
        if (!connected_) {
            stream_.expires_after(std::chrono::seconds(10));
            stream_.async_connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), (unsigned short)port_),
                                  [self = shared_from_this()](beast::error_code ec) {
                                      if (ec) return self->finish(0);
                                      self->connected_ = true;
                                      self->write();
                                  });
            return;
        }
        write();
    }

private:
    void write() {
        stream_.expires_after(std::chrono::seconds(60));
        http::async_write(stream_, req_, [self = shared_from_this()](beast::error_code ec, size_t) {
            if (ec) return self->finish(0);
            self->res_ = {};
            http::async_read(self->stream_, self->buf_, self->res_, [self](beast::error_code ec2, size_t) {
                self->finish(ec2 ? 0 : (int)self->res_.result_int());
            });
        });
    }
    void finish(int status) {
        if (status == 0) {
            beast::error_code ig;
            stream_.socket().close(ig);
            connected_ = false;
        }
        auto d = std::move(done_);
        d(status, res_.body());
    }

    beast::tcp_stream stream_;
    int port_;
    bool connected_ = false;
    beast::flat_buffer buf_;
    http::request<http::empty_body> req_;
    http::response<http::string_body> res_;
    std::function<void(int, const std::string&)> done_;
};

// ---- the service under test ---------------------------------------------------------------

struct Service {
    std::vector<std::unique_ptr<ServerProcess>> replicas;
    std::string url(size_t i = 0) const { return replicas[i]->url(); }
};

void wait_done(const std::string& url, const std::string& id) {
    for (int i = 0; i < 6000; i++) {
        auto r = http_call("GET", url + "/v1/memory/requests/" + id);
        if (r.status == 200 && json::parse(r.body).value("state", "") != "pending") return;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    throw std::runtime_error("request " + id + " not done in 60 s");
}

// Live note ids of the feed, in order.
std::vector<std::string> live_notes(const std::string& url, std::string* head) {
    std::vector<std::string> ids;
    std::string since;
    for (;;) {
        auto r = http_call("GET", url + "/v1/memory/changes?limit=1000&since=" + since);
        json j = json::parse(r.body);
        for (const json& e : j["items"])
            if (!e.value("deleted", false)) ids.push_back(e["id"]);
            else ids.erase(std::remove(ids.begin(), ids.end(), e["id"].get<std::string>()), ids.end());
        if (j["items"].empty()) break;
        since = j["next_cursor"];
    }
    *head = since;
    return ids;
}

// Enough notes for every round to delete one.
void seed_notes(const std::string& url, int want) {
    static const char* contexts[] = {"island states sea levels climate", "nuclear weapons treaty inspections",
                                     "development finance poverty", "peace security council reform",
                                     "human rights refugees", "trade growth economy", "health pandemic vaccines",
                                     "terrorism violence peace"};
    std::string head;
    for (int i = 0; (int)live_notes(url, &head).size() < want && i < 200; i++) {
        const std::string id = "seed-" + std::to_string(i);
        http_call("POST", url + "/v1/memory/requests",
                  json{{"request_id", id}, {"context", contexts[i % 8]}, {"max_items", 10}}.dump());
        wait_done(url, id);
    }
}

struct FeedNumbers {
    double reads_per_s = 0;
    int errors = 0;
    std::vector<double> wake_ms;
};

FeedNumbers measure_feed(const Service& svc, int clients, double seconds, int rounds) {
    FeedNumbers out;
    std::string head;
    std::vector<std::string> notes = live_notes(svc.url(0), &head);
    net::io_context ioc;
    std::vector<std::shared_ptr<Client>> cs;
    for (int i = 0; i < clients; i++) cs.push_back(std::make_shared<Client>(ioc, svc.replicas[i % svc.replicas.size()]->port()));

    // (1) reads at the head, back to back
    long reads = 0;
    const auto t0 = Clock::now();
    const auto end = t0 + std::chrono::milliseconds((int64_t)(seconds * 1000));
    std::function<void(size_t)> next = [&](size_t i) {
        if (Clock::now() >= end) return;
        cs[i]->get("/v1/memory/changes?limit=100&since=" + head, [&, i](int status, const std::string&) {
            if (status == 200) reads++;
            else out.errors++;
            next(i);
        });
    };
    for (size_t i = 0; i < cs.size(); i++) next(i);
    ioc.run();
    out.reads_per_s = (double)reads / std::chrono::duration<double>(Clock::now() - t0).count();

    // (2) long polls woken by a deletion
    for (int r = 0; r < rounds && r < (int)notes.size(); r++) {
        ioc.restart();
        int answered = 0;
        Clock::time_point sent{};
        std::string next_head;
        for (auto& c : cs)
            c->get("/v1/memory/changes?limit=100&wait=30&since=" + head, [&](int status, const std::string& body) {
                if (status != 200) {
                    out.errors++;
                } else {
                    out.wake_ms.push_back(sent == Clock::time_point{} ? -1 : ms_since(sent));
                    next_head = json::parse(body)["next_cursor"];
                }
                answered++;
            });
        // Let every poll reach its server and wait, then make the change.
        ioc.run_for(std::chrono::milliseconds(500));
        sent = Clock::now();
        std::thread deleter([&] { http_call("DELETE", svc.url(0) + "/v1/memory/items/" + notes[(size_t)r]); });
        while (answered < clients && ioc.run_one_for(std::chrono::seconds(40))) {
        }
        deleter.join();
        head = next_head;
    }
    return out;
}

struct Options {
    int clients = 200, rounds = 20, requests = 8, repeat = 2;
    double seconds = 5;
    int year = 2019;
    std::string model = std::string(TANDEM_SHARED_DIR) + "/models/stories260K.gguf";
    std::string configs = "sqlite,pg1,pg2,llm";
};

// The UN General Debate speeches of one year, one .txt file each.
void write_corpus(const std::string& dir, int year) {
    mkdir(dir.c_str(), 0755);
    tandem::cloud::for_each_ungd_speech(std::string(TANDEM_SHARED_DIR) + "/corpus/ungd.jsonl.xz", year, year,
                                        [&](tandem::cloud::UngdSpeech&& s) {
                                            tandem_test::write_file(dir + "/" + s.id + ".txt", s.text);
                                        });
}

Service start(const std::string& kind, const std::string& corpus, const std::string& db, size_t n,
              std::vector<std::string> extra = {}) {
    Service svc;
    for (size_t i = 0; i < n; i++) {
        std::vector<std::string> args = {"--port", "0", "--corpus", corpus, "--db", db};
        args.insert(args.end(), extra.begin(), extra.end());
        svc.replicas.push_back(std::make_unique<ServerProcess>(TANDEM_CLOUD_BIN, args, 600000));
    }
    (void)kind;
    return svc;
}

// Seconds from the first POST until `n` memory requests are done.
double note_throughput(const std::string& url, int n) {
    static const char* contexts[] = {"climate change and rising sea levels", "nuclear disarmament and inspections",
                                     "poverty and sustainable development", "reform of the security council"};
    const auto t0 = Clock::now();
    for (int i = 0; i < n; i++)
        http_call("POST", url + "/v1/memory/requests",
                  json{{"request_id", "t-" + std::to_string(i)}, {"context", contexts[i % 4]}, {"max_items", 2}}.dump());
    for (int i = 0; i < n; i++) wait_done(url, "t-" + std::to_string(i));
    return ms_since(t0) / 1000.0;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (i + 1 >= argc) {
            std::fprintf(stderr, "bench-cloud-feed: %s needs a value\n", a.c_str());
            return 2;
        }
        const std::string v = argv[++i];
        if (a == "--clients") o.clients = std::stoi(v);
        else if (a == "--seconds") o.seconds = std::stod(v);
        else if (a == "--rounds") o.rounds = std::stoi(v);
        else if (a == "--requests") o.requests = std::stoi(v);
        else if (a == "--repeat") o.repeat = std::stoi(v);
        else if (a == "--model") o.model = v;
        else if (a == "--configs") o.configs = v;
        else if (a == "--year") o.year = std::stoi(v);
        else {
            std::fprintf(stderr, "bench-cloud-feed: unknown option %s\n", a.c_str());
            return 2;
        }
    }
    auto wants = [&](const char* c) { return ("," + o.configs + ",").find(std::string(",") + c + ",") != std::string::npos; };
    tandem_test::TempDir tmp;
    const std::string corpus = tmp.file("corpus");
    write_corpus(corpus, o.year);
    std::printf("corpus: UNGD %d speeches; %d clients, reads for %.1f s, %d wake-up rounds\n\n", o.year, o.clients,
                o.seconds, o.rounds);
    if (wants("sqlite") || wants("pg1") || wants("pg2"))
        std::printf("| configuration | feed reads/s | wake-up p50 (ms) | p99 (ms) | max (ms) | errors |\n|---|---|---|---|---|---|\n");
    std::unique_ptr<tandem_test::PgServer> pg;
    int db_n = 0;
    for (const char* cfg : {"sqlite", "pg1", "pg2"}) {
        if (!wants(cfg)) continue;
        std::string db;
        size_t replicas = 1;
        if (std::string(cfg) == "sqlite") {
            db = tmp.file("cloud.db");
        } else {
            if (tandem_test::pg_bin_dir().empty()) {
                std::printf("| %s | skipped: PostgreSQL not installed |\n", cfg);
                continue;
            }
            if (!pg) pg = std::make_unique<tandem_test::PgServer>();
            const std::string name = "bench" + std::to_string(++db_n);
            pg->create_database(name);
            db = pg->uri(name);
            replicas = std::string(cfg) == "pg2" ? 2 : 1;
        }
        Service svc = start(cfg, corpus, db, replicas);
        seed_notes(svc.url(0), o.rounds + 2);
        FeedNumbers f = measure_feed(svc, o.clients, o.seconds, o.rounds);
        std::printf("| %s | %.0f | %.1f | %.1f | %.1f | %d |\n", cfg, f.reads_per_s, percentile(f.wake_ms, 50),
                    percentile(f.wake_ms, 99), percentile(f.wake_ms, 100), f.errors);
        std::fflush(stdout);
    }
    if (wants("llm")) {
        // Built-in and upstream alternate (--repeat times each), so that a change in the
        // machine's load during the run shows as spread instead of as a difference.
        std::printf("\n| note requests (%d, max_items 2) | run | seconds | requests/s |\n|---|---|---|---|\n", o.requests);
        for (int rep = 1; rep <= o.repeat; rep++) {
            {
                Service builtin = start("builtin", corpus, tmp.file("builtin" + std::to_string(rep) + ".db"), 1, {"--model", o.model});
                const double s = note_throughput(builtin.url(), o.requests);
                std::printf("| built-in model | %d | %.2f | %.2f |\n", rep, s, o.requests / s);
            }
            {
                Service upstream = start("upstream", corpus, tmp.file("upstream" + std::to_string(rep) + ".db"), 1, {"--model", o.model});
                Service front = start("front", corpus, tmp.file("front" + std::to_string(rep) + ".db"), 1, {"--llm-url", upstream.url()});
                const double s = note_throughput(front.url(), o.requests);
                std::printf("| --llm-url (tandem-cloud --model as the upstream) | %d | %.2f | %.2f |\n", rep, s, o.requests / s);
            }
            std::fflush(stdout);
        }
    }
    return 0;
}
