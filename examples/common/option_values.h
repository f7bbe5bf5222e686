// Command-line value parsing shared by the example servers (tandem-cloud, tandem-compose):
// a bad value throws UsageError naming the flag, the accepted range and what was given.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <string>

namespace tandem::examples {

struct UsageError {
    std::string message;
};

inline int parse_int(const std::string& flag, const std::string& v, long lo, long hi) {
    char* end = nullptr;
    long x = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || x < lo || x > hi)
        throw UsageError{flag + " wants an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got '" +
                         v + "'"};
    return (int)x;
}

inline double parse_number(const std::string& flag, const std::string& v, double lo, double hi) {
    char* end = nullptr;
    double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || !(x >= lo && x <= hi)) {
        char range[64];
        std::snprintf(range, sizeof range, "[%g, %g]", lo, hi);
        throw UsageError{flag + " wants a number in " + range + ", got '" + v + "'"};
    }
    return x;
}

}  // namespace tandem::examples
