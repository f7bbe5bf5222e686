// Fault tokens and queues (see faults.h for the grammar).
#include "faults.h"

#include <cstdlib>

namespace tandem::cloud {

// Parses a decimal integer in [lo, hi] or throws naming the token.
static int parse_int(const std::string& s, int lo, int hi, const std::string& token) {
    if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos)
        throw FaultSpecError("fault '" + token + "': '" + s + "' is not a number");
    int v = std::atoi(s.c_str());
    if (v < lo || v > hi)
        throw FaultSpecError("fault '" + token + "': " + s + " is outside [" + std::to_string(lo) + ", " +
                             std::to_string(hi) + "]");
    return v;
}

std::vector<Fault> parse_fault_token(const std::string& token_in) {
    std::string token = token_in;
    int times = 1;
    size_t star = token.find('*');
    if (star != std::string::npos) {
        times = parse_int(token.substr(star + 1), 1, 10000, token_in);
        token = token.substr(0, star);
    }
    std::string name = token, arg;
    size_t colon = token.find(':');
    if (colon != std::string::npos) name = token.substr(0, colon), arg = token.substr(colon + 1);
    Fault f;
    f.token = token;
    if (name == "reset" && arg.empty()) f.mode = FaultMode::reset;
    else if (name == "drop" && arg.empty()) f.mode = FaultMode::drop;
    else if (name == "truncate" && arg.empty()) f.mode = FaultMode::truncate;
    else if (name == "badjson" && arg.empty()) f.mode = FaultMode::bad_json;
    else if (name == "delay") {
        f.mode = FaultMode::delay;
        f.delay_ms = parse_int(arg, 0, 600000, token_in);
    } else if (name == "429") {
        f.mode = FaultMode::too_many;
        f.status = 429;
        f.retry_after_s = arg.empty() ? 1 : parse_int(arg, 0, 3600, token_in);
    } else if (name == "status") {
        f.mode = FaultMode::status;
        f.status = parse_int(arg, 400, 599, token_in);
    } else if (arg.empty() && name.size() == 3 && name.find_first_not_of("0123456789") == std::string::npos) {
        f.mode = FaultMode::status;
        f.status = parse_int(name, 400, 599, token_in);
    } else {
        throw FaultSpecError("unknown fault '" + token_in +
                             "' (want reset, drop, truncate, badjson, delay:MS, 429:S, CODE or status:CODE, "
                             "optionally followed by *N)");
    }
    return std::vector<Fault>((size_t)times, f);
}

void FaultQueues::push(const std::string& path, const Fault& f) {
    std::lock_guard<std::mutex> lock(mu_);
    queues_[path].push_back(f);
}

void FaultQueues::push_spec(const std::string& spec) {
    // Parse everything first: a bad spec queues nothing.
    std::vector<std::pair<std::string, Fault>> parsed;
    size_t pos = 0;
    while (pos < spec.size()) {
        size_t end = spec.find(';', pos);
        if (end == std::string::npos) end = spec.size();
        std::string part = spec.substr(pos, end - pos);
        pos = end + 1;
        if (part.empty()) continue;
        size_t eq = part.find('=');
        if (eq == std::string::npos || eq == 0)
            throw FaultSpecError("fault spec part '" + part + "': want PATH=TOKEN[,TOKEN...]");
        std::string path = part.substr(0, eq), list = part.substr(eq + 1);
        size_t p = 0;
        while (p <= list.size()) {
            size_t comma = list.find(',', p);
            if (comma == std::string::npos) comma = list.size();
            std::string tok = list.substr(p, comma - p);
            if (tok.empty()) throw FaultSpecError("fault spec part '" + part + "': empty fault");
            for (const Fault& f : parse_fault_token(tok)) parsed.emplace_back(path, f);
            p = comma + 1;
        }
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [path, f] : parsed) queues_[path].push_back(f);
}

std::optional<Fault> FaultQueues::pop(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& key : {path, std::string("*")}) {
        auto it = queues_.find(key);
        if (it == queues_.end() || it->second.empty()) continue;
        Fault f = it->second.front();
        it->second.pop_front();
        return f;
    }
    return std::nullopt;
}

void FaultQueues::clear() {
    std::lock_guard<std::mutex> lock(mu_);
    queues_.clear();
}

std::map<std::string, std::vector<std::string>> FaultQueues::list() {
    std::lock_guard<std::mutex> lock(mu_);
    std::map<std::string, std::vector<std::string>> out;
    for (const auto& [path, q] : queues_)
        for (const Fault& f : q) out[path].push_back(f.token);
    return out;
}

}  // namespace tandem::cloud
