// tandem-compose: the composition assistant. A local web app (default) or a line mode (--tui)
// over tandem::Assistant.
//
//   tandem-compose --model M [--cloud URL] [--token T] [--db PATH] [--router R] [--threshold X]
//                  [--backend B] [--threads N] [--private] [--port P] [--tui] [--config FILE.json]
//
// --config reads an AssistantConfig JSON file first; the other flags override its fields.
// Web mode prints "open http://127.0.0.1:PORT/?token=T" on stdout and serves until SIGINT or
// SIGTERM. Exit codes: 0 after a clean stop, 1 on a runtime error, 2 on a bad command line.
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "../common/option_values.h"
#include "api.h"
#include "server.h"
#include "tandem/mapping_faults.h"
#include "tui.h"

using namespace tandem;
using namespace tandem::compose;
using namespace tandem::examples;

static const char* kUsage =
    "usage: tandem-compose --model M [--cloud URL] [--token T] [--db PATH] [--router R] [--threshold X]\n"
    "                      [--backend auto|cpu|cuda] [--threads N] [--private] [--port P] [--tui]\n"
    "                      [--config FILE.json]\n"
    "  --model      the local GGUF model (e.g. ../shared/models/tandem-demo-client-q8_0.gguf)\n"
    "  --cloud      base URL of the memory service and chat endpoint (e.g. tandem-cloud's)\n"
    "  --token      bearer token for the cloud\n"
    "  --db         SQLite file for memory notes (no memory without it)\n"
    "  --router     router JSON (tandem router ...); --threshold X in [0,1] sets its knob\n"
    "  --private    never contact the cloud\n"
    "  --port       web app port on 127.0.0.1 (default: a free port)\n"
    "  --tui        line mode on the terminal instead of the web app\n";

int main(int argc, char** argv) {
    report_mapping_faults();  // the local model truncated while mapped: an error, not a silent SIGBUS
    AssistantConfig cfg;
    bool tui = false;
    int port = 0;
    try {
        std::vector<std::string> args(argv + 1, argv + argc);
        // --config first, so that the other flags override it wherever they stand.
        for (size_t i = 0; i + 1 < args.size(); i++)
            if (args[i] == "--config") cfg = AssistantConfig::from_json_file(args[i + 1]);
        for (size_t i = 0; i < args.size(); i++) {
            const std::string& a = args[i];
            auto value = [&]() -> const std::string& {
                if (i + 1 >= args.size()) throw UsageError{"option " + a + " needs a value"};
                return args[++i];
            };
            if (a == "-h" || a == "--help") {
                std::fputs(kUsage, stdout);
                return 0;
            } else if (a == "--config") value();
            else if (a == "--model" || a == "-m") cfg.model_path = value();
            else if (a == "--cloud") cfg.cloud_url = value();
            else if (a == "--token") cfg.cloud_token = value();
            else if (a == "--db") cfg.memory_db = value();
            else if (a == "--router") cfg.router_path = value();
            else if (a == "--threshold") cfg.router_threshold = parse_number(a, value(), 0, 1);
            else if (a == "--backend") cfg.backend = value();
            else if (a == "--threads") cfg.n_threads = parse_int(a, value(), 0, 1024);
            else if (a == "--private") cfg.privacy_mode = true;
            else if (a == "--port") port = parse_int(a, value(), 0, 65535);
            else if (a == "--tui") tui = true;
            else throw UsageError{"unknown option '" + a + "'"};
        }
        if (cfg.model_path.empty()) throw UsageError{"--model is required (or model_path in --config)"};
    } catch (const UsageError& e) {
        std::fprintf(stderr, "tandem-compose: %s\n%s", e.message.c_str(), kUsage);
        return 2;
    } catch (const std::exception& e) {  // --config: the file's error names it and the field
        std::fprintf(stderr, "tandem-compose: %s\n", e.what());
        return 2;
    }

    // Signals go to one thread (sigwait below); block them before any thread starts.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    if (!tui) pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

    EventHub hub;
    try {
        auto on_event = [&hub](const AssistantEvent& e) {
            hub.push(e);
            std::fprintf(stderr, "tandem-compose: [%s] %s\n", event_kind_name(e.kind), e.message.c_str());
        };
        std::unique_ptr<Assistant> assistant = Assistant::create(cfg, on_event);
        if (tui) return run_tui(*assistant, std::cin, std::cout, isatty(STDOUT_FILENO), cfg.cloud_token);

        Api api(*assistant, hub, cfg.privacy_mode, cfg.cloud_token);
        ServerOptions opt;
        opt.port = (uint16_t)port;
        opt.token = random_token();
        Server server(opt, api);
        uint16_t bound = server.listen();
        std::printf("open http://127.0.0.1:%u/?token=%s\n", (unsigned)bound, opt.token.c_str());
        std::fflush(stdout);
        std::atomic<bool> run_failed{false};
        std::thread sig_thread([&] {
            int sig = 0;
            sigwait(&sigs, &sig);
            if (!run_failed)
                std::fprintf(stderr, "tandem-compose: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
            server.stop();
        });
        try {
            server.run();
        } catch (...) {
            // The signal thread must be joined before it goes out of scope (a joinable
            // std::thread destroyed during unwinding calls std::terminate): wake it, then rethrow.
            run_failed = true;
            pthread_kill(sig_thread.native_handle(), SIGTERM);
            sig_thread.join();
            throw;
        }
        // run() returns only after stop(), which only the signal thread calls.
        sig_thread.join();
        std::fprintf(stderr, "tandem-compose: stopped\n");
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tandem-compose: error: %s\n", e.what());
        return 1;
    }
}
