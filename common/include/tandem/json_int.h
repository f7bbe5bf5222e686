// A JSON value as an integer in [lo, hi], for numbers read from files and from the network,
// where nlohmann's get<int64_t>() would truncate a float, wrap an unsigned integer above
// INT64_MAX, and convert a float outside int64's range with undefined behaviour. Header-only;
// its users link nlohmann_json themselves.
#pragma once
#include <cstdint>
#include <optional>

#include <nlohmann/json.hpp>

namespace tandem {

// The value when it is a JSON integer (not a float, even 3.0) within [lo, hi]; else nullopt.
inline std::optional<int64_t> json_int_in(const nlohmann::json& v, int64_t lo, int64_t hi) {
    if (!v.is_number_integer()) return std::nullopt;
    if (v.is_number_unsigned()) {
        const uint64_t u = v.get<uint64_t>();
        if (hi < 0 || u > (uint64_t)hi || (lo > 0 && u < (uint64_t)lo)) return std::nullopt;
        return (int64_t)u;
    }
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) return std::nullopt;
    return x;
}

}  // namespace tandem
