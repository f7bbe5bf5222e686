// Request-target parsing shared by the example HTTP servers (tandem-cloud, tandem-compose):
// "/path?k=v&k2=v2" into a percent-decoded path and query map ('+' is a space).
#pragma once
#include <cctype>
#include <map>
#include <string>
#include <string_view>

namespace tandem::examples {

inline std::string url_decode(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); i++) {
        if (s[i] == '+') {
            out += ' ';
        } else if (s[i] == '%' && i + 2 < s.size() && std::isxdigit((unsigned char)s[i + 1]) &&
                   std::isxdigit((unsigned char)s[i + 2])) {
            out += (char)std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16);
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

// A key without '=' maps to ""; a repeated key keeps its last value.
inline void split_target(std::string_view target, std::string& path, std::map<std::string, std::string>& query) {
    size_t q = target.find('?');
    path = url_decode(target.substr(0, q));
    if (q == std::string_view::npos) return;
    std::string_view rest = target.substr(q + 1);
    while (!rest.empty()) {
        size_t amp = rest.find('&');
        std::string_view kv = rest.substr(0, amp);
        size_t eq = kv.find('=');
        query[url_decode(kv.substr(0, eq))] = eq == std::string_view::npos ? "" : url_decode(kv.substr(eq + 1));
        if (amp == std::string_view::npos) break;
        rest = rest.substr(amp + 1);
    }
}

}  // namespace tandem::examples
