// Aggregates and writes the memory experiment's results (see memory_report.h).
#include "memory_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <stdexcept>

#include "text_metrics.h"

namespace tandem::eval {

// ---- aggregates ---------------------------------------------------------------------------

static double mean_of(const std::vector<DraftScore>& s, const std::function<double(const DraftScore&)>& f) {
    double t = 0;
    for (const auto& x : s) t += f(x);
    return s.empty() ? 0 : t / (double)s.size();
}

// Token-weighted perplexity: exp(sum of NLL / sum of tokens).
static double perplexity(const std::vector<DraftScore>& s) {
    double nll = 0, n = 0;
    for (const auto& x : s) {
        nll += x.nll * x.tokens;
        n += x.tokens;
    }
    return n > 0 ? std::exp(nll / n) : 0;
}

static std::vector<double> column(const std::vector<DraftScore>& s, const std::function<double(const DraftScore&)>& f) {
    std::vector<double> v;
    for (const auto& x : s) v.push_back(f(x));
    return v;
}

struct Metric {
    const char* key;
    const char* label;
    std::function<double(const DraftScore&)> get;
    bool lower_is_better;
};

static const std::vector<Metric>& metrics() {
    static const std::vector<Metric> m = {
        {"nll", "NLL (nats/token)", [](const DraftScore& d) { return d.nll; }, true},
        {"rouge_l", "ROUGE-L F1", [](const DraftScore& d) { return d.rouge; }, false},
        {"chrf", "chrF", [](const DraftScore& d) { return d.chrf; }, false},
    };
    return m;
}

static const Condition* find(const MemoryReport& r, const std::string& name) {
    for (const auto& c : r.conditions)
        if (c.name == name) return &c;
    return nullptr;
}

struct Comparison {
    std::string a, b;
    Interval d[3];  // per metric: mean(a - b) and its 95% interval
};

static std::vector<Comparison> comparisons(const MemoryReport& r) {
    std::vector<std::pair<std::string, std::string>> pairs;
    for (const auto& c : r.conditions)
        if (c.name != "none") pairs.push_back({c.name, "none"});
    for (const auto& [a, b] : std::vector<std::pair<std::string, std::string>>{
             {"notes", "raw"}, {"notes", "stale"}, {"notes", "unrelated"}, {"cloud_rag", "notes"}, {"old_notes", "old_none"},
             {"notes", "old_none"}})
        pairs.push_back({a, b});
    std::vector<Comparison> out;
    for (const auto& [a, b] : pairs) {
        const Condition *ca = find(r, a), *cb = find(r, b);
        if (!ca || !cb || ca->scores.empty() || ca->scores.size() != cb->scores.size()) continue;
        Comparison c{a, b, {}};
        for (size_t m = 0; m < 3; m++)
            c.d[m] = paired_bootstrap(column(ca->scores, metrics()[m].get), column(cb->scores, metrics()[m].get),
                                      r.resamples, r.seed + m);
        out.push_back(c);
    }
    return out;
}

static double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, (size_t)(p * (double)v.size()))];
}

// ---- markdown -----------------------------------------------------------------------------

static std::string fmt(const char* f, double x) {
    char b[64];
    std::snprintf(b, sizeof b, f, x);
    return b;
}

static std::string interval_cell(const Interval& i, bool lower_is_better, const char* f) {
    // '+' marks an interval that excludes 0 on the better side, '-' on the worse side
    const bool better = lower_is_better ? i.hi < 0 : i.lo > 0;
    const bool worse = lower_is_better ? i.lo > 0 : i.hi < 0;
    return fmt(f, i.mean) + " [" + fmt(f, i.lo) + ", " + fmt(f, i.hi) + "]" + (better ? " +" : worse ? " -" : "");
}

std::string memory_markdown(const MemoryReport& r) {
    std::string md = "# Memory (HybridRAG): bench-hybrid-memory\n\n";
    auto setting = [&](const char* k) { return r.settings.contains(k) ? r.settings[k].get<std::string>() : std::string("?"); };
    md += "Command: `" + setting("command") + "`  \nMachine: " + setting("machine") + "  \nDate: " + setting("date") + "\n\n";
    const size_t n = r.conditions.empty() ? 0 : r.conditions[0].scores.size();
    md += "Quality of the next sentence, " + std::to_string(n) + " held-out 2022 drafts (means; perplexity is token-weighted):\n\n";
    md += "| condition | model | memory tokens | prompt tokens | perplexity | ROUGE-L F1 | chrF | what is in the prompt |\n";
    md += "|---|---|---|---|---|---|---|---|\n";
    for (const auto& c : r.conditions) {
        md += "| " + c.name + " | " + c.model + " | " + fmt("%.0f", mean_of(c.scores, [](const DraftScore& d) { return d.memory_tokens; })) +
              " | " + fmt("%.0f", mean_of(c.scores, [](const DraftScore& d) { return d.prompt_tokens; })) +
              " | " + fmt("%.2f", perplexity(c.scores)) + " | " + fmt("%.4f", mean_of(c.scores, metrics()[1].get)) + " | " +
              fmt("%.2f", mean_of(c.scores, metrics()[2].get)) + " | " + c.what + " |\n";
    }
    md += "\nPaired differences (A - B), mean and 95% bootstrap interval (" + std::to_string(r.resamples) +
          " resamples); `+`: the interval excludes 0 in A's favour, `-`: in B's favour. NLL is per token, lower is better.\n\n";
    md += "| A | B | ΔNLL (nats/token) | ΔROUGE-L F1 | ΔchrF |\n|---|---|---|---|---|\n";
    for (const auto& c : comparisons(r))
        md += "| " + c.a + " | " + c.b + " | " + interval_cell(c.d[0], true, "%+.4f") + " | " +
              interval_cell(c.d[1], false, "%+.4f") + " | " + interval_cell(c.d[2], false, "%+.2f") + " |\n";
    if (!r.latency.empty()) {
        md += "\nTime to the first suggestion token per keystroke:\n\n";
        md += "| path | cloud delay (ms) | keystrokes | p50 (ms) | p95 (ms) | mean (ms) | what is timed |\n|---|---|---|---|---|---|---|\n";
        for (const auto& l : r.latency) {
            double mean = 0;
            for (double x : l.ttft_ms) mean += x;
            mean = l.ttft_ms.empty() ? 0 : mean / (double)l.ttft_ms.size();
            md += "| " + l.path + " | " + std::to_string(l.delay_ms) + " | " + std::to_string(l.ttft_ms.size()) + " | " +
                  fmt("%.1f", percentile(l.ttft_ms, 0.5)) + " | " + fmt("%.1f", percentile(l.ttft_ms, 0.95)) + " | " +
                  fmt("%.1f", mean) + " | " + l.what + " |\n";
        }
    }
    return md;
}

// ---- SVG: differences vs none with their intervals ----------------------------------------

static std::string esc(const std::string& s) {
    std::string o;
    for (char c : s) o += c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '&' ? "&amp;" : std::string(1, c);
    return o;
}

static std::string memory_svg(const MemoryReport& r) {
    std::vector<Comparison> rows;
    for (const auto& c : comparisons(r))
        if (c.b == "none") rows.push_back(c);
    const int label_w = 110, panel_w = 230, gap = 20, top = 50, row_h = 28;
    const int h = top + (int)rows.size() * row_h + 40, w = label_w + 3 * (panel_w + gap);
    std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(w) + "\" height=\"" +
                    std::to_string(h) + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
    s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
    s += "<text x=\"8\" y=\"18\" font-size=\"14\">Each condition minus no memory: mean and 95% paired bootstrap interval "
         "(green: better, red: worse)</text>\n";
    for (size_t i = 0; i < rows.size(); i++)
        s += "<text x=\"8\" y=\"" + std::to_string(top + (int)i * row_h + 16) + "\">" + esc(rows[i].a) + "</text>\n";
    for (size_t m = 0; m < 3; m++) {
        const int x0 = label_w + (int)m * (panel_w + gap);
        double lo = 0, hi = 0;
        for (const auto& c : rows) {
            lo = std::min(lo, c.d[m].lo);
            hi = std::max(hi, c.d[m].hi);
        }
        const double pad = (hi - lo) * 0.08 + 1e-9;
        lo -= pad;
        hi += pad;
        auto X = [&](double v) { return x0 + (v - lo) / (hi - lo) * panel_w; };
        s += "<text x=\"" + std::to_string(x0) + "\" y=\"" + std::to_string(top - 12) + "\">Δ " + metrics()[m].label +
             (metrics()[m].lower_is_better ? " (lower is better)" : " (higher is better)") + "</text>\n";
        s += "<rect x=\"" + std::to_string(x0) + "\" y=\"" + std::to_string(top - 4) + "\" width=\"" + std::to_string(panel_w) +
             "\" height=\"" + std::to_string((int)rows.size() * row_h + 8) + "\" fill=\"none\" stroke=\"#ccc\"/>\n";
        s += "<line x1=\"" + fmt("%.1f", X(0)) + "\" x2=\"" + fmt("%.1f", X(0)) + "\" y1=\"" + std::to_string(top - 4) +
             "\" y2=\"" + std::to_string(top + (int)rows.size() * row_h + 4) + "\" stroke=\"#888\" stroke-dasharray=\"3,3\"/>\n";
        for (size_t i = 0; i < rows.size(); i++) {
            const Interval& iv = rows[i].d[m];
            const bool lb = metrics()[m].lower_is_better;
            const bool better = lb ? iv.hi < 0 : iv.lo > 0, worse = lb ? iv.lo > 0 : iv.hi < 0;
            const char* col = better ? "#1a7f37" : worse ? "#cf222e" : "#555";
            const std::string y = std::to_string(top + (int)i * row_h + 12);
            s += "<line x1=\"" + fmt("%.1f", X(iv.lo)) + "\" x2=\"" + fmt("%.1f", X(iv.hi)) + "\" y1=\"" + y + "\" y2=\"" + y +
                 "\" stroke=\"" + col + "\" stroke-width=\"2\"/>\n";
            s += "<circle cx=\"" + fmt("%.1f", X(iv.mean)) + "\" cy=\"" + y + "\" r=\"4\" fill=\"" + col + "\"/>\n";
        }
        const std::string yb = std::to_string(top + (int)rows.size() * row_h + 20);
        s += "<text x=\"" + std::to_string(x0) + "\" y=\"" + yb + "\" font-size=\"10\">" + fmt("%.3g", lo) + "</text>\n";
        s += "<text x=\"" + std::to_string(x0 + panel_w) + "\" y=\"" + yb + "\" font-size=\"10\" text-anchor=\"end\">" +
             fmt("%.3g", hi) + "</text>\n";
    }
    return s + "</svg>\n";
}

// ---- files --------------------------------------------------------------------------------

static void write_text(const std::string& path, const std::string& text) {
    std::ofstream f(path, std::ios::binary);
    f << text;
    if (!f) throw std::runtime_error("cannot write " + path);
}

void write_memory_report(const MemoryReport& r, const std::string& dir) {
    nlohmann::json j;
    j["settings"] = r.settings;
    j["phases_s"] = r.phases;
    for (const auto& c : r.conditions) {
        nlohmann::json cj = {{"name", c.name}, {"model", c.model}, {"what", c.what}, {"perplexity", perplexity(c.scores)}};
        for (const auto& m : metrics()) cj["mean_" + std::string(m.key)] = mean_of(c.scores, m.get);
        nlohmann::json per = nlohmann::json::array();
        for (const auto& d : c.scores)
            per.push_back({{"nll", d.nll}, {"tokens", d.tokens}, {"rouge_l", d.rouge}, {"chrf", d.chrf},
                           {"memory_tokens", d.memory_tokens}, {"prompt_tokens", d.prompt_tokens},
                           {"window_cut", d.window_cut}, {"continuation", d.continuation}});
        cj["per_draft"] = per;
        j["conditions"].push_back(cj);
    }
    for (const auto& c : comparisons(r)) {
        nlohmann::json cj = {{"a", c.a}, {"b", c.b}};
        for (size_t m = 0; m < 3; m++) cj[metrics()[m].key] = {{"mean", c.d[m].mean}, {"lo", c.d[m].lo}, {"hi", c.d[m].hi}};
        j["comparisons"].push_back(cj);
    }
    for (const auto& l : r.latency)
        j["latency"].push_back({{"path", l.path}, {"delay_ms", l.delay_ms}, {"what", l.what}, {"ttft_ms", l.ttft_ms},
                                {"p50", percentile(l.ttft_ms, 0.5)}, {"p95", percentile(l.ttft_ms, 0.95)}});
    j["drafts"] = r.drafts;
    write_text(dir + "/memory.json", j.dump(1) + "\n");
    write_text(dir + "/memory.md", memory_markdown(r));
    write_text(dir + "/memory-gain.svg", memory_svg(r));
}

}  // namespace tandem::eval
