// UTF-8 encoding of one code point, shared by the tokenizer (client_engine) and the router's
// word splitter (sdk/router), which otherwise depend on nothing in common. Header-only.
#pragma once
#include <cstdint>
#include <string>

namespace tandem {

// Appends the UTF-8 encoding of `cp` (must be <= U+10FFFF) to `out`.
inline void utf8_append(uint32_t cp, std::string& out) {
    if (cp < 0x80) {
        out += (char)cp;
    } else if (cp < 0x800) {
        out += (char)(0xC0 | (cp >> 6));
        out += (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += (char)(0xE0 | (cp >> 12));
        out += (char)(0x80 | ((cp >> 6) & 0x3F));
        out += (char)(0x80 | (cp & 0x3F));
    } else {
        out += (char)(0xF0 | (cp >> 18));
        out += (char)(0x80 | ((cp >> 12) & 0x3F));
        out += (char)(0x80 | ((cp >> 6) & 0x3F));
        out += (char)(0x80 | (cp & 0x3F));
    }
}

}  // namespace tandem
