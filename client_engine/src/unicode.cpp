// Unicode helpers: strict UTF-8, O(1) property lookup, the GPT-2 byte map. See unicode.h.
#include "tandem/unicode.h"

#include <array>
#include <memory>

namespace tandem::unicode {

// ---- property lookup -------------------------------------------------------------------
// A two-stage table built once from the generated ranges: stage1[cp >> 8] selects a
// 256-entry block in stage2; identical blocks are shared (about 150 distinct blocks).

namespace {

constexpr uint32_t kMaxCpt = 0x10FFFF;
constexpr uint32_t kBlock = 256;
constexpr uint32_t kNumBlocks = (kMaxCpt + 1) / kBlock;  // 4352

struct FlagTable {
    std::vector<uint16_t> stage1;  // (kNumBlocks) block index into stage2
    std::vector<uint8_t> stage2;   // (n_unique_blocks * 256) flags

    FlagTable() {
        std::vector<uint8_t> flat(kMaxCpt + 1, 0);
        for (size_t i = 0; i < kCptRangesCount; ++i)
            for (uint32_t cp = kCptRanges[i].first; cp <= kCptRanges[i].last; ++cp) flat[cp] = kCptRanges[i].flags;
        stage1.resize(kNumBlocks);
        for (uint32_t b = 0; b < kNumBlocks; ++b) {
            const uint8_t* blk = flat.data() + (size_t)b * kBlock;
            size_t found = stage2.size() / kBlock;
            for (size_t u = 0; u < stage2.size() / kBlock; ++u) {
                if (std::equal(blk, blk + kBlock, stage2.data() + u * kBlock)) { found = u; break; }
            }
            if (found == stage2.size() / kBlock) stage2.insert(stage2.end(), blk, blk + kBlock);
            stage1[b] = (uint16_t)found;
        }
    }
};

const FlagTable& flag_table() {
    static const FlagTable table;  // thread-safe initialization (C++11 magic static)
    return table;
}

}  // namespace

uint8_t cpt_flags(uint32_t cp) {
    if (cp > kMaxCpt) return 0;
    const FlagTable& t = flag_table();
    return t.stage2[(size_t)t.stage1[cp >> 8] * kBlock + (cp & (kBlock - 1))];
}

bool in_spans(const CptSpan* spans, size_t n, uint32_t cp) {
    for (size_t i = 0; i < n; ++i)
        if (spans[i].first <= cp && cp <= spans[i].last) return true;
    return false;
}

// ---- UTF-8 ------------------------------------------------------------------------------

size_t utf8_decode(const char* s, size_t n, uint32_t& cp) {
    const auto* u = reinterpret_cast<const uint8_t*>(s);
    const uint8_t b0 = u[0];
    if (b0 < 0x80) { cp = b0; return 1; }
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b0 >= 0xC2 && b0 <= 0xDF) { len = 2; cp = b0 & 0x1F; }
    else if (b0 >= 0xE0 && b0 <= 0xEF) {
        len = 3; cp = b0 & 0x0F;
        if (b0 == 0xE0) lo = 0xA0;       // no overlongs
        else if (b0 == 0xED) hi = 0x9F;  // no surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        len = 4; cp = b0 & 0x07;
        if (b0 == 0xF0) lo = 0x90;       // no overlongs
        else if (b0 == 0xF4) hi = 0x8F;  // <= U+10FFFF
    } else { cp = kReplacement; return 1; }
    for (size_t i = 1; i < len; ++i) {
        if (i >= n) { cp = kReplacement; return i; }
        const uint8_t b = u[i];
        const uint8_t l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (b < l || b > h) { cp = kReplacement; return i; }
        cp = (cp << 6) | (b & 0x3F);
    }
    return len;
}

size_t utf8_to_cpts(std::string_view text, std::vector<uint32_t>& out) {
    out.clear();
    out.reserve(text.size());
    size_t replaced = 0;
    for (size_t i = 0; i < text.size();) {
        const uint8_t b = (uint8_t)text[i];
        if (b < 0x80) { out.push_back(b); ++i; continue; }
        uint32_t cp;
        const size_t n = utf8_decode(text.data() + i, text.size() - i, cp);
        if (cp == kReplacement && !(n == 3 && (uint8_t)text[i] == 0xEF)) ++replaced;  // U+FFFD itself is EF BF BD
        out.push_back(cp);
        i += n;
    }
    return replaced;
}

bool utf8_valid(std::string_view text) {
    for (size_t i = 0; i < text.size();) {
        if ((uint8_t)text[i] < 0x80) { ++i; continue; }
        uint32_t cp;
        const size_t n = utf8_decode(text.data() + i, text.size() - i, cp);
        if (cp == kReplacement && !(n == 3 && text.compare(i, 3, "\xEF\xBF\xBD") == 0)) return false;
        i += n;
    }
    return true;
}

size_t utf8_incomplete_tail(std::string_view s) {
    // Look at the last up-to-3 bytes for a lead byte whose sequence runs past the end.
    const size_t n = s.size();
    for (size_t back = 1; back <= 3 && back <= n; ++back) {
        const uint8_t b = (uint8_t)s[n - back];
        if ((b & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
        if (b == 0xC0 || b == 0xC1 || b >= 0xF5) return 0;  // never valid: nothing to wait for
        size_t need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
        if (need <= back) return 0;  // complete (or ASCII)
        // The prefix must itself be valid so far: decode reports consumed < need only then.
        uint32_t cp;
        const size_t used = utf8_decode(s.data() + n - back, back, cp);
        return used == back ? back : 0;
    }
    return 0;
}

std::string utf8_sanitize(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        if ((uint8_t)text[i] < 0x80) { out += text[i++]; continue; }
        uint32_t cp;
        const size_t n = utf8_decode(text.data() + i, text.size() - i, cp);
        if (cp == kReplacement) utf8_append(kReplacement, out);
        else out.append(text.data() + i, n);
        i += n;
    }
    return out;
}

// ---- GPT-2 byte map -----------------------------------------------------------------------

namespace {
struct ByteMap {
    std::array<uint32_t, 256> to_cpt{};
    std::array<int16_t, 256 + 68> to_byte{};  // indexed by code point (all images are < 324)
    ByteMap() {
        to_byte.fill(-1);
        uint32_t next = 256;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
            to_cpt[b] = printable ? (uint32_t)b : next++;
            to_byte[to_cpt[b]] = (int16_t)b;
        }
    }
};
const ByteMap& byte_map() {
    static const ByteMap map;
    return map;
}
}  // namespace

uint32_t byte_to_cpt(uint8_t b) { return byte_map().to_cpt[b]; }

int cpt_to_byte(uint32_t cp) { return cp < 256 + 68 ? byte_map().to_byte[cp] : -1; }

}  // namespace tandem::unicode
