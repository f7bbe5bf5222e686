// SHA-256 (FIPS 180-4), streaming. Used by `tandem pull` to verify downloaded models, and by
// tandem-cloud for digests of bearer tokens and memory requests; small enough that a crypto
// library is not worth the dependency. The compression function has no data-dependent
// branches or table lookups, so hashing a token takes the same time whatever its bytes
// (comparing digests in constant time is the caller's part).
//
//   Sha256 h; h.update(p, n); ...; std::string hex = h.hex_digest();
//
// Thread safety: one object per thread; no shared state.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tandem {

class Sha256 {
public:
    Sha256();
    void update(const void* data, size_t n);
    // Finishes and returns the 32-byte digest. The object is then reset (ready for new input).
    std::array<uint8_t, 32> digest();
    std::string hex_digest();  // 64 lowercase hex characters; resets like digest()

private:
    void block(const uint8_t* p);  // one 64-byte block into state_
    std::array<uint32_t, 8> state_;
    uint8_t buf_[64];
    size_t buf_len_ = 0;
    uint64_t total_ = 0;  // bytes hashed so far
};

// The hex SHA-256 of a string / of a file's bytes. sha256_file throws std::runtime_error naming
// the file when it cannot be read.
std::string sha256_hex(std::string_view bytes);
std::string sha256_file(const std::string& path);

// True for 64 hex digits (either case).
bool is_sha256_hex(std::string_view s);

}  // namespace tandem
