// TenantDirectory: the tokens file, token digests and the constant-time lookup (tenants.h).
#include "tandem/cloud/tenants.h"

#include <sys/stat.h>

#include <cctype>
#include <fstream>
#include <map>
#include <set>

#include "tandem/sha256.h"

namespace tandem::cloud {

namespace {

std::array<uint8_t, 32> digest_of(std::string_view token) {
    Sha256 h;
    h.update(token.data(), token.size());
    return h.digest();
}

// 0 when equal; the time does not depend on where the arrays differ.
unsigned diff32(const std::array<uint8_t, 32>& a, const std::array<uint8_t, 32>& b) {
    unsigned d = 0;
    for (size_t i = 0; i < 32; i++) d |= (unsigned)(a[i] ^ b[i]);
    return d;
}

std::string_view trim(std::string_view s) {
    const size_t b = s.find_first_not_of(" \t\r");
    if (b == std::string_view::npos) return {};
    const size_t e = s.find_last_not_of(" \t\r");
    return s.substr(b, e - b + 1);
}

}  // namespace

std::string tenant_name_problem(std::string_view name) {
    if (name.empty() || name.size() > 64) return "a tenant name has 1 to 64 characters";
    for (char c : name)
        if (!(std::isalnum((unsigned char)c) || c == '.' || c == '_' || c == '@' || c == '-'))
            return "a tenant name may hold only letters, digits and . _ @ -";
    return "";
}

std::string token_problem(std::string_view token) {
    if (token.empty() || token.size() > 512) return "a token has 1 to 512 characters";
    for (char c : token)
        if ((unsigned char)c <= 0x20 || (unsigned char)c >= 0x7f) return "a token may hold only printable ASCII without spaces";
    return "";
}

TenantDirectory TenantDirectory::open() {
    TenantDirectory d;
    d.open_ = true;
    return d;
}

TenantDirectory TenantDirectory::single(const std::string& token) {
    if (std::string p = token_problem(token); !p.empty()) throw TenantsError("--token: " + p);
    TenantDirectory d;
    d.entries_.push_back({digest_of(token), kDefaultTenant});
    return d;
}

TenantDirectory TenantDirectory::from_file(const std::string& path, void (*warn)(const std::string&)) {
    std::ifstream in(path);
    if (!in) throw TenantsError("tokens file " + path + ": cannot be read");
    struct stat st{};
    if (warn && stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
        warn("tokens file " + path + " can be read by other users (chmod 600 it)");
    TenantDirectory d;
    std::map<std::array<uint8_t, 32>, int> seen;  // digest -> line
    std::string line;
    for (int n = 1; std::getline(in, line); n++) {
        const std::string where = "tokens file " + path + ":" + std::to_string(n) + ": ";
        const std::string_view t = trim(line);
        if (t.empty() || t[0] == '#') continue;
        const size_t sp = t.find_first_of(" \t");
        if (sp == std::string_view::npos) throw TenantsError(where + "want 'TENANT TOKEN', found one field");
        const std::string_view name = t.substr(0, sp), token = trim(t.substr(sp));
        if (token.find_first_of(" \t") != std::string_view::npos)
            throw TenantsError(where + "want 'TENANT TOKEN', found more than two fields");
        if (std::string p = tenant_name_problem(name); !p.empty()) throw TenantsError(where + p);
        if (std::string p = token_problem(token); !p.empty()) throw TenantsError(where + p);
        const auto dg = digest_of(token);
        if (auto it = seen.find(dg); it != seen.end())
            throw TenantsError(where + "this token is already given on line " + std::to_string(it->second) +
                               " (a token names one tenant)");
        seen[dg] = n;
        if (warn && token.size() < 16)
            warn(where + "the token of tenant '" + std::string(name) + "' is shorter than 16 characters (easy to guess)");
        d.entries_.push_back({dg, std::string(name)});
    }
    if (d.entries_.empty()) throw TenantsError("tokens file " + path + ": no 'TENANT TOKEN' line");
    return d;
}

size_t TenantDirectory::n_tenants() const {
    std::set<std::string> names;
    for (const Entry& e : entries_) names.insert(e.tenant);
    return names.size();
}

std::optional<Tenant> TenantDirectory::authenticate(std::string_view authorization) const {
    if (open_) return Tenant{kDefaultTenant};
    const std::string_view h = trim(authorization);
    if (h.size() < 7) return std::nullopt;
    for (size_t i = 0; i < 6; i++)
        if (std::tolower((unsigned char)h[i]) != "bearer"[i]) return std::nullopt;
    if (h[6] != ' ') return std::nullopt;
    const std::string_view token = trim(h.substr(7));
    if (token.empty()) return std::nullopt;
    const auto dg = digest_of(token);
    // Every entry is compared, whatever matched before: no early exit.
    const Entry* match = nullptr;
    for (const Entry& e : entries_) {
        const bool same = diff32(e.digest, dg) == 0;
        match = same ? &e : match;
    }
    if (!match) return std::nullopt;
    return Tenant{match->tenant};
}

}  // namespace tandem::cloud
