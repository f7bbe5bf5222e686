// Line mode of the composition assistant (contract in tui.h).
#include "tui.h"

#include "api.h"  // url_site, token_may_go_to

#include <cstdio>
#include <iomanip>
#include <istream>
#include <ostream>
#include <sstream>
#include <string>

namespace tandem::compose {

static void print_ask(Assistant& a, const std::string& question, const std::string& document, std::ostream& out) {
    // The selection is the document's last paragraph: what a writer would have highlighted.
    size_t para = document.rfind("\n\n");
    std::string selection = para == std::string::npos ? document : document.substr(para + 2);
    out << "answer: " << std::flush;
    AskResult r = a.ask(question, selection, AskOptions{}, [&](std::string_view piece) {
        out << piece << std::flush;
        return true;
    });
    out << "\n[answered by " << r.answered_by;
    if (r.router_score >= 0)
        out << std::fixed << std::setprecision(2) << ", score " << r.router_score << " vs threshold "
            << r.router_threshold << std::defaultfloat;
    out << ": " << r.reason << "]\n";
}

static void print_notes(Assistant& a, std::ostream& out) {
    auto notes = a.memory_notes(10);
    if (notes.empty()) out << "(no memory notes yet)\n";
    for (size_t i = 0; i < notes.size(); i++)
        out << i + 1 << ". " << notes[i].text << "\n   source: " << notes[i].title << "\n";
}

static void print_usage(Assistant& a, std::ostream& out) {
    UsageTotals u = a.usage();
    out << "backend " << u.backend << ", " << (u.online ? "online" : "offline") << "; suggestions "
        << u.suggestions << ", asks " << u.local_asks << " local / " << u.cloud_asks << " cloud; tokens "
        << u.prompt_tokens << " prompt / " << u.completion_tokens << " completion; cloud tokens "
        << u.cloud_prompt_tokens << " / " << u.cloud_completion_tokens << "; last ttft " << u.last_ttft_ms
        << " ms, " << u.last_tokens_per_s << " tok/s; notes stored " << u.memory_notes << "\n";
}

// /cloud [URL [TOKEN]]: see tui.h.
static void cloud_command(Assistant& a, const std::string& args, const std::string& cloud_token,
                          const std::string& token_site, std::ostream& out) {
    std::istringstream words(args);
    std::string url, token;
    words >> url;
    if (url.empty()) {
        out << "cloud: " << (a.cloud_url().empty() ? "(none)" : a.cloud_url()) << ", "
            << (a.usage().online ? "online" : "offline") << "\n";
        return;
    }
    if (url == "none") url.clear();
    if (words >> token) {
        if (token == "-") token.clear();
    } else if (token_may_go_to(url, token_site)) {
        token = cloud_token;
    } else if (!cloud_token.empty()) {
        out << "the app's cloud token is sent only to " << token_site << "; give this cloud's own: /cloud URL TOKEN (- for none)\n";
        return;
    }
    a.set_cloud(url, token);  // a bad URL or token throws, naming it, and changes nothing
    out << "cloud: " << (a.cloud_url().empty() ? "(none)" : a.cloud_url()) << "\n";
}

int run_tui(Assistant& a, std::istream& in, std::ostream& out, bool color, const std::string& cloud_token) {
    const char* grey = color ? "\x1b[90m" : "";
    const char* reset = color ? "\x1b[0m" : "";
    const std::string token_site = url_site(a.cloud_url());
    std::string document, suggestion;
    out << "tandem-compose line mode: type text lines; /accept /ask Q /notes /doc /usage /cloud /help /quit\n";
    std::string line;
    while (out << "> " << std::flush, std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        try {
            if (line == "/quit" || line == "/exit") return 0;
            if (line == "/help") {
                out << "text: appended to the document | /accept | /ask QUESTION | /notes | /doc | /usage | "
                       "/cloud [URL [TOKEN]] | /quit\n";
                continue;
            }
            if (line == "/cloud" || line.rfind("/cloud ", 0) == 0) {
                cloud_command(a, line.substr(6), cloud_token, token_site, out);
                continue;
            }
            if (line == "/notes") {
                print_notes(a, out);
                continue;
            }
            if (line == "/doc") {
                out << document << "\n";
                continue;
            }
            if (line == "/usage") {
                print_usage(a, out);
                continue;
            }
            if (line.rfind("/ask", 0) == 0) {
                std::string q = line.size() > 4 ? line.substr(5) : "";
                if (q.find_first_not_of(' ') == std::string::npos) {
                    out << "usage: /ask QUESTION\n";
                    continue;
                }
                print_ask(a, q, document, out);
                continue;
            }
            if (line == "/accept") {
                if (suggestion.empty()) {
                    out << "(no suggestion to accept)\n";
                    continue;
                }
                document += suggestion;
                suggestion.clear();
            } else if (!line.empty() && line[0] == '/') {
                out << "unknown command " << line << " (/help lists them)\n";
                continue;
            } else if (line.empty()) {
                if (!document.empty()) document += "\n\n";
            } else {
                bool glue = !document.empty() && document.back() != '\n' && document.back() != ' ';
                document += (glue ? " " : "") + line;
            }
            out << grey << "..." << std::flush;
            SuggestResult r = a.suggest(document, document.size(), [&](std::string_view piece) {
                out << piece << std::flush;
                return true;
            });
            suggestion = r.text;
            out << reset << "\n";
            if (!r.memory.empty()) out << "[" << r.memory.size() << " memory note(s) in the prompt; /notes]\n";
        } catch (const std::exception& e) {
            out << reset << "\nerror: " << e.what() << "\n";
        }
    }
    out << "\n";
    return 0;
}

}  // namespace tandem::compose
