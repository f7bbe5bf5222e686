// tandem-cloud: the reference cloud for Tandem's memory protocol (docs/protocol.md).
//
//   tandem-cloud --port P --corpus DIR_OR_FILE --db PATH [--host H] [--tokens FILE | --token T]
//                [--insecure-no-auth] [--model M | --llm-url URL [--llm-token T] [--llm-model NAME]
//                [--llm-timeout S]] [--lease-seconds S] [--max-year Y] [--max-body BYTES]
//                [--max-pending N] [--max-body-total BYTES] [--max-connections N]
//                [--enable-admin] [--faults SPEC]
//
// Tenants (tenants.h): --tokens FILE gives each token its tenant; --token T is one tenant;
// without either every caller is one local tenant, which tandem-cloud allows only on a
// loopback address (127.0.0.0/8, ::1) unless --insecure-no-auth says otherwise.
//
// Loads the corpus into --db (skipped when the corpus is unchanged since the last start),
// prints "listening on http://HOST:PORT" on stdout and serves until SIGINT/SIGTERM.
// Exit codes: 0 after a clean shutdown, 1 on a runtime error, 2 on a bad command line.
#include <boost/asio/ip/address.hpp>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../common/option_values.h"
#include "tandem/cloud/corpus.h"
#include "http_server.h"
#include "tandem/cloud/llm.h"
#include "tandem/cloud/server_db.h"
#include "tandem/mapping_faults.h"
#include "upstream_llm.h"

using namespace tandem::cloud;
using namespace tandem::examples;

static const char* kUsage =
    "usage: tandem-cloud --port P --corpus DIR_OR_FILE --db PATH [--host H] [--tokens FILE | --token T]\n"
    "                    [--insecure-no-auth] [--model M | --llm-url URL [--llm-token T] [--llm-model NAME]\n"
    "                    [--llm-timeout S]] [--lease-seconds S] [--max-year Y] [--max-body BYTES]\n"
    "                    [--max-pending N] [--max-body-total BYTES] [--max-connections N]\n"
    "                    [--enable-admin] [--faults SPEC]\n"
    "  --corpus     a directory of .txt/.md files, one such file, or a UNGD .jsonl[.xz] file\n"
    "  --db         a SQLite file, or postgresql://... (a libpq URI): PostgreSQL, which any number of\n"
    "               tandem-cloud replicas may share\n"
    "  --lease-seconds  how long a memory request stays with a worker that stopped renewing its\n"
    "               lease (crashed) before another worker takes it over (default 30)\n"
    "  --port 0     picks a free port (printed on stdout)\n"
    "  --tokens     a file of 'TENANT TOKEN' lines: each token names its tenant, whose memory\n"
    "               requests, notes and deletions no other tenant sees\n"
    "  --token      one tenant ('default') with this token\n"
    "  --insecure-no-auth  allow no token on an address other than loopback (anyone who can\n"
    "               connect reads and deletes the notes)\n"
    "  --max-pending  memory requests pending per tenant before 429 (default 100)\n"
    "  --model      a GGUF model: memory notes written by it (key takeaways), and /v1/chat/completions;\n"
    "               without it (or --llm-url) notes are extracted sentences and chat answers 501\n"
    "  --llm-url    an OpenAI-compatible server (vLLM, SGLang, llama.cpp, a hosted API) that writes the\n"
    "               notes and answers /v1/chat/completions instead of a built-in model; --llm-token is\n"
    "               its bearer token, --llm-model the model to ask for, --llm-timeout (default 60) the\n"
    "               connect timeout and longest silence in seconds before a retry\n"
    "  --max-body-total  request bodies in progress, all connections together (default 64 MiB; 503 beyond)\n"
    "  --max-connections open connections (default 4096, and always below the open-file limit)\n"
    "  --faults     PATH=TOKEN[,TOKEN...][;...], tokens: reset drop truncate badjson delay:MS 429:S CODE\n";

// 127.0.0.0/8 and ::1 (and ::ffff:127.x): only this machine can connect.
static bool is_loopback(const std::string& host) {
    boost::system::error_code ec;
    const auto addr = boost::asio::ip::make_address(host, ec);
    if (ec) return false;  // listen() reports the bad address
    if (addr.is_v6() && addr.to_v6().is_v4_mapped())
        return addr.to_v6().to_v4().is_loopback();
    return addr.is_loopback();
}

int main(int argc, char** argv) {
    tandem::report_mapping_faults();  // the --model file truncated while mapped: an error, not a silent SIGBUS
    ServerConfig cfg;
    std::string corpus, model, token, tokens_file;
    UpstreamConfig upstream;
    int max_year = 0;
    bool have_port = false, insecure_no_auth = false;
    try {
        std::vector<std::string> args(argv + 1, argv + argc);
        for (size_t i = 0; i < args.size(); i++) {
            const std::string& a = args[i];
            auto value = [&]() -> const std::string& {
                if (i + 1 >= args.size()) throw UsageError{"option " + a + " needs a value"};
                return args[++i];
            };
            if (a == "-h" || a == "--help") {
                std::fputs(kUsage, stdout);
                return 0;
            } else if (a == "--port") {
                cfg.port = (uint16_t)parse_int(a, value(), 0, 65535);
                have_port = true;
            } else if (a == "--host") cfg.host = value();
            else if (a == "--corpus") corpus = value();
            else if (a == "--db") cfg.db_path = value();
            else if (a == "--token") token = value();
            else if (a == "--tokens") tokens_file = value();
            else if (a == "--insecure-no-auth") insecure_no_auth = true;
            else if (a == "--max-pending") cfg.max_pending = parse_int(a, value(), 1, 100000);
            else if (a == "--model") model = value();
            else if (a == "--llm-url") upstream.url = value();
            else if (a == "--llm-token") upstream.token = value();
            else if (a == "--llm-model") upstream.model = value();
            else if (a == "--lease-seconds") cfg.lease_ms = (int64_t)(parse_number(a, value(), 0.1, 3600) * 1000);
            else if (a == "--llm-timeout") upstream.timeout_s = parse_number(a, value(), 0.1, 3600);
            else if (a == "--max-year") max_year = parse_int(a, value(), 1, 9999);
            else if (a == "--max-body") cfg.max_body = (size_t)parse_int(a, value(), 1024, 1 << 30);
            else if (a == "--max-body-total") cfg.max_body_total = (size_t)parse_int(a, value(), 1024, 1 << 30);
            else if (a == "--max-connections") cfg.max_connections = (size_t)parse_int(a, value(), 1, 1 << 20);
            else if (a == "--enable-admin") cfg.enable_admin = true;
            else if (a == "--faults") cfg.faults = value();
            else throw UsageError{"unknown option '" + a + "'"};
        }
        if (!have_port) throw UsageError{"--port is required (0 picks a free port)"};
        if (corpus.empty()) throw UsageError{"--corpus is required"};
        if (cfg.db_path.empty()) throw UsageError{"--db is required"};
        if (cfg.max_body_total < cfg.max_body)
            throw UsageError{"--max-body-total (" + std::to_string(cfg.max_body_total) + ") must be >= --max-body (" +
                             std::to_string(cfg.max_body) + ")"};
        if (!model.empty() && !upstream.url.empty()) throw UsageError{"--model and --llm-url exclude each other"};
        if (upstream.url.empty() && (!upstream.token.empty() || !upstream.model.empty()))
            throw UsageError{"--llm-token and --llm-model need --llm-url"};
        if (!upstream.url.empty() && upstream.url.rfind("http://", 0) != 0 && upstream.url.rfind("https://", 0) != 0)
            throw UsageError{"--llm-url must start with http:// or https://, got '" + upstream.url + "'"};
        if (!cfg.faults.empty()) FaultQueues().push_spec(cfg.faults);  // validate now
        if (!token.empty() && !tokens_file.empty()) throw UsageError{"give --token or --tokens, not both"};
        if (!tokens_file.empty()) {
            cfg.tenants = TenantDirectory::from_file(tokens_file, [](const std::string& w) {
                std::fprintf(stderr, "tandem-cloud: warning: %s\n", w.c_str());
            });
        } else if (!token.empty()) {
            cfg.tenants = TenantDirectory::single(token);
        } else if (!is_loopback(cfg.host) && !insecure_no_auth) {
            throw UsageError{"refusing to serve " + cfg.host +
                             " without authentication: anyone who can connect could read and delete the notes. "
                             "Give --tokens FILE (or --token T), bind to 127.0.0.1, or pass --insecure-no-auth"};
        }
    } catch (const TenantsError& e) {
        std::fprintf(stderr, "tandem-cloud: %s\n", e.what());
        return 2;
    } catch (const UsageError& e) {
        std::fprintf(stderr, "tandem-cloud: %s\n%s", e.message.c_str(), kUsage);
        return 2;
    } catch (const FaultSpecError& e) {
        std::fprintf(stderr, "tandem-cloud: --faults: %s\n", e.what());
        return 2;
    }
    try {
        {
            std::unique_ptr<ServerDb> db = open_database(cfg.db_path);
            std::string sig = corpus_signature(corpus, max_year);
            if (db->corpus_signature() != sig) {
                std::fprintf(stderr, "tandem-cloud: loading corpus %s ...\n", corpus.c_str());
                std::vector<CorpusDoc> docs = load_corpus(corpus, max_year);
                db->replace_corpus(docs, sig);
            }
            std::fprintf(stderr, "tandem-cloud: corpus: %lld documents, %lld passages; feed epoch %s\n",
                         (long long)db->count_docs(), (long long)db->count_passages(), db->epoch().c_str());
        }
        // With --model: one engine for LLM-written memory notes and for chat completions; with
        // --llm-url: the upstream server for both.
        std::unique_ptr<MemoryGenerator> gen = std::make_unique<ExtractiveGenerator>();
        std::shared_ptr<ChatBackend> chat;
        if (!model.empty()) {
            tandem::EngineParams ep;
            ep.context.n_ctx = 1024;
            std::shared_ptr<tandem::Engine> engine = tandem::Engine::load(model, ep);
            std::fprintf(stderr, "tandem-cloud: model %s (%s, %.1fM parameters) on the CPU\n", model.c_str(),
                         engine->model().config().architecture.c_str(), engine->model().config().n_params / 1e6);
            gen = std::make_unique<LlmGenerator>(engine);
            chat = std::make_shared<ChatWorker>(engine);
        } else if (!upstream.url.empty()) {
            auto up = std::make_shared<Upstream>(upstream);
            std::fprintf(stderr, "tandem-cloud: LLM server %s%s%s\n", up->config().url.c_str(),
                         upstream.model.empty() ? "" : ", model ", upstream.model.c_str());
            gen = std::make_unique<UpstreamGenerator>(up);
            chat = std::make_shared<UpstreamChat>(up);
        }
        if (!cfg.tenants.requires_token())
            std::fprintf(stderr, "tandem-cloud: no authentication: every caller is tenant '%s'%s\n", kDefaultTenant,
                         is_loopback(cfg.host) ? "" : " (--insecure-no-auth)");
        else
            std::fprintf(stderr, "tandem-cloud: %zu tenant(s), %zu token(s)\n", cfg.tenants.n_tenants(), cfg.tenants.n_tokens());
        CloudServer server(cfg, std::move(gen), chat);
        uint16_t port = server.listen();
        std::printf("listening on http://%s:%u\n", cfg.host.c_str(), (unsigned)port);
        std::fflush(stdout);
        server.run();
        std::fprintf(stderr, "tandem-cloud: stopped\n");
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tandem-cloud: error: %s\n", e.what());
        return 1;
    }
}
