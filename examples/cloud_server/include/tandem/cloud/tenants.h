// Who is calling: bearer tokens -> tenants. A tenant (a user or an organisation) owns its memory
// requests, notes, change feed and deletions (server_db.h); the token is its only credential.
//
// Three modes, chosen by tandem-cloud's flags:
//   --tokens FILE   one "TENANT TOKEN" pair a line; blank lines and lines starting with '#'
//                   are ignored. A tenant may have several tokens (one per device, or an old
//                   and a new one while rotating); a token belongs to one tenant only.
//                   Tenant names: 1..64 of A-Z a-z 0-9 . _ @ -; tokens: 1..512 printable ASCII
//                   characters without spaces.
//   --token T       one tenant, "default", with that token.
//   neither         no authentication: every caller is tenant "default" (tandem-cloud allows
//                   this only on a loopback address unless --insecure-no-auth).
//
// Only SHA-256 digests of the tokens are kept in memory; authenticate() hashes the presented
// token and compares it with every stored digest in constant time (no early exit), so its
// timing says nothing about which token, or how much of one, matched.
//
// Thread safety: a loaded TenantDirectory is read-only; authenticate() may be called from any
// thread.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tandem::cloud {

struct Tenant {
    std::string name;
};

// The tenant of --token and of a server without tokens (and of data from before tenants).
inline constexpr const char* kDefaultTenant = "default";

class TenantsError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class TenantDirectory {
public:
    // No authentication: every caller is kDefaultTenant.
    static TenantDirectory open();
    // One tenant, kDefaultTenant, with this token. Throws TenantsError for a bad token.
    static TenantDirectory single(const std::string& token);
    // Reads a tokens file (format above). Throws TenantsError naming the file and line for an
    // unreadable file, a malformed line, a bad name or token, or a token given twice. Lines
    // of tokens shorter than 16 characters are reported through `warn` (easy to guess), as is
    // a file that other users may read.
    static TenantDirectory from_file(const std::string& path, void (*warn)(const std::string&) = nullptr);

    bool requires_token() const { return !open_; }
    size_t n_tokens() const { return entries_.size(); }
    size_t n_tenants() const;

    // The tenant of an Authorization header value ("Bearer TOKEN", scheme case-insensitive),
    // or nullopt when the header is missing, malformed or names no known token. Without
    // authentication, every caller (with or without a header) is kDefaultTenant.
    std::optional<Tenant> authenticate(std::string_view authorization) const;

private:
    struct Entry {
        std::array<uint8_t, 32> digest;
        std::string tenant;
    };
    bool open_ = false;
    std::vector<Entry> entries_;
};

// Checks a tenant name / a token against the rules above; returns "" or the reason.
std::string tenant_name_problem(std::string_view name);
std::string token_problem(std::string_view token);

}  // namespace tandem::cloud
