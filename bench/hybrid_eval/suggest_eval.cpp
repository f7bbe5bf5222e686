// bench-suggestions: would a writer take the ghost text? The demo client model suggests at four
// cursor places in each held-out draft (bench/hybrid_eval/drafts.h: a 2022 speech cut at a
// sentence boundary, the truth being the two sentences that follow), under several rule sets
// (tandem/suggest_text.h), and each suggestion is measured against what the speaker really
// wrote next (suggestion_metrics.h).
//
//   cursor places    sentence_end  right after a finished sentence (no space typed yet)
//                    after_space   a third of the way into the next sentence, after a space
//                    word_end      half way, right after a whole word (no space yet)
//                    mid_word      two thirds of the way, inside a word of 4+ letters (half typed)
//   rule sets        before        what suggest() did: 24 tokens, cut only at a blank line
//                    after         the rules' defaults, 48 tokens at most
//                    no-heal, no-norepeat, ngramN (N-token runs), cap24: "after" with one
//                    thing changed
//
// The prompt is suggest()'s (tandem/suggest_prompt.h, no notes), greedy as suggest() is.
//
// usage: bench-suggestions [--drafts N] [--year Y] [--configs a,b,...] [--threads N]
//                          [--shared DIR] [--json FILE] [--examples N]
#include <sys/utsname.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include "drafts.h"
#include "suggestion_metrics.h"
#include "text_metrics.h"
#include "tandem/assistant.h"
#include "tandem/engine.h"
#include "tandem/suggest_prompt.h"
#include "tandem/suggest_text.h"

using namespace tandem;
using namespace tandem::eval;
using Clock = std::chrono::steady_clock;

// ---- settings -------------------------------------------------------------------------------

struct Options {
    std::string shared = TANDEM_SHARED_DIR, json_out;
    int drafts = 100, year = 2022, threads = 0, examples = 4;
    std::vector<std::string> configs = {"before", "after", "no-heal", "no-norepeat", "ngram4", "ngram6", "cap24"};
    std::string command;
};

struct Config {
    std::string name;
    int max_tokens;
    SuggestRules rules;
};

static Config config_named(const std::string& name) {
    Config c{name, 48, SuggestRules{}};
    if (name == "before") {
        c.max_tokens = 24;
        c.rules.end = SuggestEnd::paragraph;
        c.rules.complete_words = false;
        c.rules.no_repeat_ngram = 0;
    } else if (name == "no-heal") {
        c.rules.complete_words = false;
    } else if (name == "no-norepeat") {
        c.rules.no_repeat_ngram = 0;
    } else if (name.rfind("ngram", 0) == 0 && name.size() > 5 && name.find_first_not_of("0123456789", 5) == std::string::npos) {
        c.rules.no_repeat_ngram = std::stoi(name.substr(5));
    } else if (name == "cap24") {
        c.max_tokens = 24;
    } else if (name != "after") {
        throw std::invalid_argument("unknown --configs entry '" + name + "' (before, after, no-heal, no-norepeat, ngramN, cap24)");
    }
    return c;
}

static Options parse_args(int argc, char** argv) {
    Options o;
    for (int i = 0; i < argc; i++) o.command += (i ? " " : "") + std::string(argv[i]);
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
            return argv[++i];
        };
        if (a == "--drafts") o.drafts = std::stoi(value());
        else if (a == "--year") o.year = std::stoi(value());
        else if (a == "--threads") o.threads = std::stoi(value());
        else if (a == "--shared") o.shared = value();
        else if (a == "--json") o.json_out = value();
        else if (a == "--examples") o.examples = std::stoi(value());
        else if (a == "--configs") {
            o.configs.clear();
            std::stringstream ss(value());
            for (std::string c; std::getline(ss, c, ',');) o.configs.push_back(c);
        } else throw std::invalid_argument("unknown option '" + a + "'");
    }
    if (o.drafts < 1) throw std::invalid_argument("--drafts must be >= 1");
    return o;
}

// ---- cursor places --------------------------------------------------------------------------

struct Place {
    std::string kind;
    std::string before;  // the text before the cursor
    std::string truth;   // what the speaker wrote from the cursor to the end of the two sentences
};

static bool word_byte(unsigned char c) { return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || c >= 0x80; }

static std::vector<Place> places_of(const Draft& d) {
    const std::string text = d.prefix + d.gap + d.truth;
    const size_t t0 = d.prefix.size() + d.gap.size();
    std::vector<std::pair<size_t, size_t>> w;  // the truth's words: [begin, end) in text
    for (size_t i = t0; i < text.size();) {
        if (!word_byte((unsigned char)text[i])) { i++; continue; }
        size_t j = i;
        while (j < text.size() && word_byte((unsigned char)text[j])) j++;
        w.emplace_back(i, j);
        i = j;
    }
    std::vector<Place> out;
    auto add = [&](const char* kind, size_t cut) { out.push_back({kind, text.substr(0, cut), text.substr(cut)}); };
    add("sentence_end", d.prefix.size());
    if (w.size() < 6) return out;
    add("after_space", w[w.size() / 3].first);
    add("word_end", w[w.size() / 2].second);
    for (size_t k = 2 * w.size() / 3; k < w.size(); k++)
        if (w[k].second - w[k].first >= 4) {
            add("mid_word", w[k].first + (w[k].second - w[k].first + 1) / 2);
            break;
        }
    return out;
}

// ---- measures -------------------------------------------------------------------------------

struct Tally {
    int n = 0, shown = 0, full = 0, past = 0, repeats = 0, glued = 0, glued_n = 0, stopped = 0;
    double chars = 0, accepted = 0, ms = 0, tokens = 0;
    nlohmann::json json() const {
        auto pct = [](int a, int b) { return b ? 100.0 * a / b : 0.0; };
        return {{"n", n},
                {"shown_pct", pct(shown, n)},
                {"mean_chars", n ? chars / n : 0},
                {"accepted_chars_per_place", n ? accepted / n : 0},
                {"accepted_chars_per_shown", shown ? accepted / shown : 0},
                {"full_accept_pct_of_shown", pct(full, shown)},
                {"runs_past_pct_of_shown", pct(past, shown)},
                {"ended_by_rules_pct_of_shown", pct(stopped, shown)},
                {"repeats_pct_of_shown", pct(repeats, shown)},
                {"glued_word_pct", pct(glued, glued_n)},
                {"glued_word_n", glued_n},
                {"mean_ms", n ? ms / n : 0},
                {"mean_tokens", n ? tokens / n : 0}};
    }
};

static std::string cpu_model() {
    std::ifstream f("/proc/cpuinfo");
    for (std::string line; std::getline(f, line);)
        if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
    return "?";
}

int main(int argc, char** argv) {
    Options opt;
    try {
        opt = parse_args(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench-suggestions: %s\n", e.what());
        return 2;
    }
    try {
        std::vector<Config> configs;
        for (const auto& c : opt.configs) configs.push_back(config_named(c));
        const std::string corpus = opt.shared + "/corpus/ungd.jsonl.xz";
        const auto t_load = Clock::now();
        std::vector<Speech> speeches = load_speeches(corpus, opt.year, opt.year);
        // A dictionary from the 20 years before: is "half word + suggestion" a word?
        std::unordered_set<std::string> dictionary;
        for (const Speech& s : load_speeches(corpus, opt.year - 20, opt.year - 1)) add_words(s.text, dictionary);
        DraftOptions dop;  // suggest()'s window takes the whole 1500-char prefix
        dop.truth_sentences = 2;
        dop.min_truth_chars = 30;
        std::vector<Draft> drafts = make_drafts(speeches, dop, (uint64_t)opt.year);
        if ((int)drafts.size() > opt.drafts) drafts.resize((size_t)opt.drafts);
        std::fprintf(stderr, "%zu drafts from %zu speeches of %d, dictionary %zu words (%.1f s)\n", drafts.size(),
                     speeches.size(), opt.year, dictionary.size(),
                     std::chrono::duration<double>(Clock::now() - t_load).count());

        EngineParams ep;
        ep.context.n_ctx = AssistantConfig{}.n_ctx;
        ep.context.n_threads = opt.threads;
        const std::string model = opt.shared + "/models/tandem-demo-client-q8_0.gguf";
        auto engine = Engine::load(model, ep);
        const Tokenizer& tok = engine->tokenizer();

        std::map<std::string, std::map<std::string, Tally>> tally;  // config -> kind ("all" too)
        nlohmann::json examples = nlohmann::json::array();
        std::map<std::string, std::vector<std::string>> glued_cases;  // config -> "partial|suggestion"
        std::map<std::string, std::vector<double>> accepted_at;        // config -> accepted chars per place
        size_t n_places = 0;
        for (size_t di = 0; di < drafts.size(); di++) {
            for (const Place& p : places_of(drafts[di])) {
                n_places++;
                size_t ws = 0;  // each draft is a fresh document
                const std::vector<int32_t> prompt = build_suggest_prompt(tok, {}, p.before, ep.context.n_ctx, 48, &ws);
                engine->prefill(prompt);  // every rule set then times its own suggestion only
                nlohmann::json ex = {{"kind", p.kind}, {"before_tail", p.before.substr(p.before.size() - std::min<size_t>(80, p.before.size()))},
                                     {"truth", p.truth.substr(0, 160)}};
                for (const Config& c : configs) {
                    GenerateParams gp;
                    gp.max_tokens = c.max_tokens;
                    gp.sampling.temperature = 0;
                    const auto t0 = Clock::now();
                    const Generation g = generate_suggestion(*engine, prompt, p.before, gp, c.rules);
                    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
                    const std::string& s = g.text;
                    accepted_at[c.name].push_back((double)accepted_chars(s, p.truth));
                    for (const std::string& kind : {p.kind, std::string("all")}) {
                        Tally& t = tally[c.name][kind];
                        t.n++;
                        t.ms += ms;
                        t.tokens += (double)g.tokens.size();
                        t.chars += (double)s.size();
                        if (s.empty()) continue;
                        t.shown++;
                        const size_t acc = accepted_chars(s, p.truth);
                        t.accepted += (double)acc;
                        t.full += acc == s.size();
                        t.past += runs_past(s);
                        t.stopped += g.finish == FinishReason::Stop;
                        t.repeats += repeats_recent(p.before, s);
                        if (!trailing_word(p.before).empty()) {
                            t.glued_n++;
                            const bool glued = glued_word(p.before, s, dictionary);
                            t.glued += glued;
                            if (glued && kind == "all" && glued_cases[c.name].size() < 12)
                                glued_cases[c.name].push_back(std::string(trailing_word(p.before)) + "|" + s.substr(0, 40));
                        }
                    }
                    ex[c.name] = s;
                }
                if ((int)di < opt.examples) examples.push_back(ex);
            }
            if ((di + 1) % 10 == 0) std::fprintf(stderr, "%zu/%zu drafts\n", di + 1, drafts.size());
        }

        struct utsname u {};
        uname(&u);
        char date[32];
        const std::time_t now = std::time(nullptr);
        std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
        nlohmann::json out = {{"command", opt.command}, {"date", date}, {"cpu", cpu_model()}, {"host", u.machine},
                              {"model", model}, {"year", opt.year}, {"drafts", drafts.size()}, {"places", n_places},
                              {"examples", examples}};
        for (const Config& c : configs) {
            out["configs"][c.name] = {{"max_tokens", c.max_tokens}, {"end", suggest_end_name(c.rules.end)},
                                      {"complete_words", c.rules.complete_words}, {"no_repeat_ngram", c.rules.no_repeat_ngram}};
            for (const auto& [kind, t] : tally[c.name]) out["results"][c.name][kind] = t.json();
            out["glued_examples"][c.name] = glued_cases[c.name];
        }
        // The table: per rule set, all places.
        std::printf("| rules | shown %% | mean chars | accepted chars / place | accepted chars / shown | taken whole %% | runs past %% | ended by the rules %% | repeats %% | glued word %% (n) | ms | tokens |\n");
        std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for (const Config& c : configs) {
            const nlohmann::json r = tally[c.name]["all"].json();
            std::printf("| %s | %.0f | %.1f | %.2f | %.2f | %.1f | %.1f | %.1f | %.1f | %.1f (%d) | %.0f | %.1f |\n", c.name.c_str(),
                        r["shown_pct"].get<double>(), r["mean_chars"].get<double>(), r["accepted_chars_per_place"].get<double>(),
                        r["accepted_chars_per_shown"].get<double>(), r["full_accept_pct_of_shown"].get<double>(),
                        r["runs_past_pct_of_shown"].get<double>(), r["ended_by_rules_pct_of_shown"].get<double>(),
                        r["repeats_pct_of_shown"].get<double>(),
                        r["glued_word_pct"].get<double>(), r["glued_word_n"].get<int>(), r["mean_ms"].get<double>(),
                        r["mean_tokens"].get<double>());
        }
        std::printf("\nper cursor place (accepted chars / place, taken whole %%):\n\n| rules |");
        const char* kinds[] = {"sentence_end", "after_space", "word_end", "mid_word"};
        for (const char* k : kinds) std::printf(" %s |", k);
        std::printf("\n| --- | --- | --- | --- | --- |\n");
        for (const Config& c : configs) {
            std::printf("| %s |", c.name.c_str());
            for (const char* k : kinds) {
                const nlohmann::json r = tally[c.name][k].json();
                std::printf(" %.2f, %.1f%% |", r["accepted_chars_per_place"].get<double>(), r["full_accept_pct_of_shown"].get<double>());
            }
            std::printf("\n");
        }
        // The change in accepted chars per place against the first rule set, paired by place.
        std::printf("\naccepted chars / place against %s (mean difference, 95%% paired bootstrap interval):\n\n",
                    configs[0].name.c_str());
        for (size_t i = 1; i < configs.size(); i++) {
            const Interval d = paired_bootstrap(accepted_at[configs[i].name], accepted_at[configs[0].name], 2000, 1);
            out["accepted_vs_" + configs[0].name][configs[i].name] = {{"mean", d.mean}, {"lo", d.lo}, {"hi", d.hi}};
            std::printf("- %s: %+.2f [%+.2f, %+.2f]\n", configs[i].name.c_str(), d.mean, d.lo, d.hi);
        }
        if (!opt.json_out.empty()) {
            std::ofstream f(opt.json_out);
            if (!f) throw std::runtime_error("cannot write " + opt.json_out);
            f << out.dump(1) << "\n";
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench-suggestions: %s\n", e.what());
        return 1;
    }
}
