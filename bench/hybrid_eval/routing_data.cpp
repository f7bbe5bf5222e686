// Routing records: sentence cutting, scoring, the JSONL line and the router datasets.
#include "routing_data.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tandem/cloud/corpus.h"
#include "text_metrics.h"

namespace tandem::eval {

using nlohmann::json;

// ---- sentences ------------------------------------------------------------------------------

bool first_sentence_complete(std::string_view text) { return tandem::cloud::split_sentences(text).size() >= 2; }

std::string first_sentence(std::string_view generated) {
    std::vector<std::string> s = tandem::cloud::split_sentences(generated);
    return s.empty() ? std::string() : s.front();
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static std::string_view trim(std::string_view s) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    return s;
}

// ---- records ----------------------------------------------------------------------------------

void score_record(RoutingRecord& r) {
    auto score = [&](const std::vector<std::string>& samples, std::vector<double>& c, std::vector<double>& rl) {
        c.clear();
        rl.clear();
        for (const std::string& s : samples) {
            c.push_back(chrf(s, r.truth));
            rl.push_back(rouge_l_f1(s, r.truth));
        }
    };
    score(r.small_samples, r.small_chrf, r.small_rouge);
    score(r.large_samples, r.large_chrf, r.large_rouge);
}

static void check_finite(double v, const char* field, const std::string& id) {
    if (!std::isfinite(v)) throw RoutingDataError("record '" + id + "': field '" + field + "' is not finite");
}

static void check_scores(const std::vector<double>& v, size_t n, const char* field, const std::string& id) {
    if (v.size() != n)
        throw RoutingDataError("record '" + id + "': field '" + field + "' has " + std::to_string(v.size()) +
                               " scores for " + std::to_string(n) + " samples");
    for (double x : v) check_finite(x, field, id);
}

std::string record_to_jsonl(const RoutingRecord& r) {
    if (r.small_samples.empty() || r.large_samples.empty())
        throw RoutingDataError("record '" + r.id + "': needs at least one sample of each model");
    check_scores(r.small_chrf, r.small_samples.size(), "small_scores", r.id);
    check_scores(r.large_chrf, r.large_samples.size(), "large_scores", r.id);
    check_scores(r.small_rouge, r.small_samples.size(), "small_rouge_l", r.id);
    check_scores(r.large_rouge, r.large_samples.size(), "large_rouge_l", r.id);
    check_finite(r.small_truth_ll, "small_truth_ll", r.id);
    check_finite(r.large_truth_ll, "large_truth_ll", r.id);
    check_finite(r.query_logprob_mean, "query_logprob_mean", r.id);
    check_finite(r.gen_entropy, "gen_entropy", r.id);
    json j = {{"query", r.query},
              {"small_scores", r.small_chrf},
              {"large_scores", r.large_chrf},
              {"query_logprob_mean", r.query_logprob_mean},
              {"gen_entropy", r.gen_entropy},
              {"id", r.id},
              {"country", r.country},
              {"year", r.year},
              {"truth", r.truth},
              {"small_samples", r.small_samples},
              {"large_samples", r.large_samples},
              {"small_rouge_l", r.small_rouge},
              {"large_rouge_l", r.large_rouge},
              {"small_truth_ll", r.small_truth_ll},
              {"large_truth_ll", r.large_truth_ll},
              {"small_ms", r.small_ms},
              {"large_ms", r.large_ms}};
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

template <class T>
static T field(const json& j, const char* name, const std::string& where) {
    auto it = j.find(name);
    if (it == j.end()) throw RoutingDataError(where + ": field '" + name + "': missing");
    try {
        return it->get<T>();
    } catch (const json::exception&) {
        throw RoutingDataError(where + ": field '" + name + "': wrong type (" + it->dump().substr(0, 60) + ")");
    }
}

RoutingRecord record_from_jsonl(std::string_view line, const std::string& where) {
    json j;
    try {
        j = json::parse(line);
    } catch (const json::exception& e) {
        throw RoutingDataError(where + ": invalid JSON: " + e.what());
    }
    if (!j.is_object()) throw RoutingDataError(where + ": expected a JSON object");
    RoutingRecord r;
    r.query = field<std::string>(j, "query", where);
    r.small_chrf = field<std::vector<double>>(j, "small_scores", where);
    r.large_chrf = field<std::vector<double>>(j, "large_scores", where);
    r.query_logprob_mean = field<double>(j, "query_logprob_mean", where);
    r.gen_entropy = field<double>(j, "gen_entropy", where);
    r.id = field<std::string>(j, "id", where);
    r.country = field<std::string>(j, "country", where);
    r.year = field<int>(j, "year", where);
    r.truth = field<std::string>(j, "truth", where);
    r.small_samples = field<std::vector<std::string>>(j, "small_samples", where);
    r.large_samples = field<std::vector<std::string>>(j, "large_samples", where);
    r.small_rouge = field<std::vector<double>>(j, "small_rouge_l", where);
    r.large_rouge = field<std::vector<double>>(j, "large_rouge_l", where);
    r.small_truth_ll = field<double>(j, "small_truth_ll", where);
    r.large_truth_ll = field<double>(j, "large_truth_ll", where);
    r.small_ms = field<double>(j, "small_ms", where);
    r.large_ms = field<double>(j, "large_ms", where);
    try {
        (void)record_to_jsonl(r);  // the same consistency checks as on writing
    } catch (const RoutingDataError& e) {
        throw RoutingDataError(where + ": " + e.what());
    }
    return r;
}

std::vector<RoutingRecord> load_records(const std::string& path) {
    std::ifstream f(path);
    if (!f) throw RoutingDataError(path + ": cannot open");
    std::vector<RoutingRecord> out;
    std::string line;
    for (int n = 1; std::getline(f, line); n++) {
        if (trim(line).empty()) continue;
        out.push_back(record_from_jsonl(line, path + ":" + std::to_string(n)));
    }
    if (out.empty()) throw RoutingDataError(path + ": no records");
    return out;
}

// ---- judges -----------------------------------------------------------------------------------

const char* judge_name(Judge j) {
    switch (j) {
        case Judge::chrf: return "chrf";
        case Judge::rouge_l: return "rouge_l";
        case Judge::likelihood: return "likelihood";
    }
    return "?";
}

Judge parse_judge(const std::string& s) {
    for (Judge j : {Judge::chrf, Judge::rouge_l, Judge::likelihood})
        if (s == judge_name(j)) return j;
    throw RoutingDataError("unknown judge '" + s + "' (chrf, rouge_l, likelihood)");
}

Dataset to_dataset(const std::vector<RoutingRecord>& records, Judge judge, const std::string& name) {
    Dataset d;
    d.file = name;
    d.signals = {Signal::query_logprob_mean, Signal::gen_entropy};
    int line = 0;
    for (const RoutingRecord& r : records) {
        TrainingRow row;
        row.query = r.query;
        switch (judge) {
            case Judge::chrf: row.small_scores = r.small_chrf, row.large_scores = r.large_chrf; break;
            case Judge::rouge_l: row.small_scores = r.small_rouge, row.large_scores = r.large_rouge; break;
            case Judge::likelihood: row.small_scores = {r.small_truth_ll}, row.large_scores = {r.large_truth_ll}; break;
        }
        if (row.small_scores.empty() || row.large_scores.empty())
            throw RoutingDataError(name + ": record '" + r.id + "' has no " + judge_name(judge) + " scores");
        row.signals.query_logprob_mean = r.query_logprob_mean;
        row.signals.gen_entropy = r.gen_entropy;
        row.line = ++line;
        d.rows.push_back(std::move(row));
    }
    return d;
}

}  // namespace tandem::eval
