// Reading fields of a router file with errors that name the file and the field
// ("router.json: field 'features.hash_bits': expected an integer in [8, 20]"). Internal.
#pragma once
#include <cmath>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tandem/json_int.h"
#include "tandem/router_features.h"

namespace tandem::detail {

using json = nlohmann::json;

[[noreturn]] inline void field_error(const std::string& file, const std::string& field,
                                     const std::string& why) {
    throw RouterError(file + ": field '" + field + "': " + why);
}

// j[key], or a "missing" error. `prefix` is the dotted path of j ("" at the top).
inline const json& require(const json& j, const char* key, const std::string& file,
                           const std::string& prefix) {
    std::string field = prefix.empty() ? key : prefix + "." + key;
    if (!j.is_object()) field_error(file, prefix.empty() ? "(top)" : prefix, "expected an object");
    auto it = j.find(key);
    if (it == j.end()) field_error(file, field, "missing");
    return *it;
}

inline double get_number(const json& j, const char* key, const std::string& file,
                         const std::string& prefix) {
    const json& v = require(j, key, file, prefix);
    std::string field = prefix.empty() ? key : prefix + "." + key;
    if (!v.is_number()) field_error(file, field, "expected a number");
    double d = v.get<double>();
    if (!std::isfinite(d)) field_error(file, field, "not finite");
    return d;
}

inline int64_t get_int(const json& j, const char* key, const std::string& file,
                       const std::string& prefix, int64_t lo, int64_t hi) {
    const json& v = require(j, key, file, prefix);
    std::string field = prefix.empty() ? key : prefix + "." + key;
    const std::string range = "expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
    if (!v.is_number_integer()) field_error(file, field, range);
    const std::optional<int64_t> x = json_int_in(v, lo, hi);
    if (!x) field_error(file, field, range + ", got " + v.dump());
    return *x;
}

inline std::string get_string(const json& j, const char* key, const std::string& file,
                              const std::string& prefix) {
    const json& v = require(j, key, file, prefix);
    if (!v.is_string()) field_error(file, prefix.empty() ? key : prefix + "." + key, "expected a string");
    return v.get<std::string>();
}

// `a` (named `field` in errors) as an array of exactly n finite numbers.
inline std::vector<double> number_array_of(const json& a, const std::string& file, const std::string& field, size_t n) {
    if (!a.is_array() || a.size() != n) field_error(file, field, "expected an array of " + std::to_string(n) + " numbers");
    std::vector<double> v;
    for (const json& x : a) {
        if (!x.is_number() || !std::isfinite(x.get<double>())) field_error(file, field, "expected finite numbers");
        v.push_back(x.get<double>());
    }
    return v;
}

// j[key] as an array of exactly n finite numbers.
inline std::vector<double> number_array(const json& j, const char* key, const std::string& file,
                                        const std::string& prefix, size_t n) {
    return number_array_of(require(j, key, file, prefix), file, prefix.empty() ? key : prefix + "." + key, n);
}

}  // namespace tandem::detail
