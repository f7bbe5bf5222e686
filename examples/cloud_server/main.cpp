// tandem-cloud: the reference cloud for Tandem's memory protocol (docs/protocol.md).
//
//   tandem-cloud --port P --corpus DIR_OR_FILE --db PATH [--host H] [--token T] [--model M]
//                [--max-year Y] [--max-body BYTES] [--enable-admin] [--faults SPEC]
//
// Loads the corpus into --db (skipped when the corpus is unchanged since the last start),
// prints "listening on http://HOST:PORT" on stdout and serves until SIGINT/SIGTERM.
// Exit codes: 0 after a clean shutdown, 1 on a runtime error, 2 on a bad command line.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../common/option_values.h"
#include "tandem/cloud/corpus.h"
#include "http_server.h"
#include "tandem/cloud/llm.h"
#include "tandem/cloud/server_db.h"

using namespace tandem::cloud;
using namespace tandem::examples;

static const char* kUsage =
    "usage: tandem-cloud --port P --corpus DIR_OR_FILE --db PATH [--host H] [--token T] [--model M]\n"
    "                    [--max-year Y] [--max-body BYTES] [--enable-admin] [--faults SPEC]\n"
    "  --corpus     a directory of .txt/.md files, one such file, or a UNGD .jsonl[.xz] file\n"
    "  --port 0     picks a free port (printed on stdout)\n"
    "  --model      a GGUF model: memory notes written by it (key takeaways), and /v1/chat/completions;\n"
    "               without it notes are extracted sentences and chat answers 501\n"
    "  --faults     PATH=TOKEN[,TOKEN...][;...], tokens: reset drop truncate badjson delay:MS 429:S CODE\n";

int main(int argc, char** argv) {
    ServerConfig cfg;
    std::string corpus, model;
    int max_year = 0;
    bool have_port = false;
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
            else if (a == "--token") cfg.token = value();
            else if (a == "--model") model = value();
            else if (a == "--max-year") max_year = parse_int(a, value(), 1, 9999);
            else if (a == "--max-body") cfg.max_body = (size_t)parse_int(a, value(), 1024, 1 << 30);
            else if (a == "--enable-admin") cfg.enable_admin = true;
            else if (a == "--faults") cfg.faults = value();
            else throw UsageError{"unknown option '" + a + "'"};
        }
        if (!have_port) throw UsageError{"--port is required (0 picks a free port)"};
        if (corpus.empty()) throw UsageError{"--corpus is required"};
        if (cfg.db_path.empty()) throw UsageError{"--db is required"};
        if (!cfg.faults.empty()) FaultQueues().push_spec(cfg.faults);  // validate now
    } catch (const UsageError& e) {
        std::fprintf(stderr, "tandem-cloud: %s\n%s", e.message.c_str(), kUsage);
        return 2;
    } catch (const FaultSpecError& e) {
        std::fprintf(stderr, "tandem-cloud: --faults: %s\n", e.what());
        return 2;
    }
    try {
        {
            ServerDb db(cfg.db_path);
            std::string sig = corpus_signature(corpus, max_year);
            if (db.meta("corpus_signature") != sig) {
                std::fprintf(stderr, "tandem-cloud: loading corpus %s ...\n", corpus.c_str());
                std::vector<CorpusDoc> docs = load_corpus(corpus, max_year);
                db.replace_corpus(docs, sig);
            }
            std::fprintf(stderr, "tandem-cloud: corpus: %lld documents, %lld passages\n",
                         (long long)db.count_docs(), (long long)db.count_passages());
        }
        // With --model: one engine for LLM-written memory notes and for chat completions.
        std::unique_ptr<MemoryGenerator> gen = std::make_unique<ExtractiveGenerator>();
        std::shared_ptr<ChatWorker> chat;
        if (!model.empty()) {
            tandem::EngineParams ep;
            ep.context.n_ctx = 1024;
            std::shared_ptr<tandem::Engine> engine = tandem::Engine::load(model, ep);
            std::fprintf(stderr, "tandem-cloud: model %s (%s, %.1fM parameters) on the CPU\n", model.c_str(),
                         engine->model().config().architecture.c_str(), engine->model().config().n_params / 1e6);
            gen = std::make_unique<LlmGenerator>(engine);
            chat = std::make_shared<ChatWorker>(engine);
        }
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
