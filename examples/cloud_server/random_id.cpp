// random_hex (random_id.h).
#include "tandem/cloud/random_id.h"

#include <sys/random.h>

#include <stdexcept>

namespace tandem::cloud {

std::string random_hex(size_t n) {
    unsigned char buf[32];
    if (n > sizeof buf) throw std::invalid_argument("random_hex: at most 32 bytes");
    size_t got = 0;
    while (got < n) {
        const ssize_t r = getrandom(buf + got, n - got, 0);
        if (r < 0) throw std::runtime_error("getrandom failed: no random bytes for an id");
        got += (size_t)r;
    }
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (size_t i = 0; i < n; i++) {
        out += hex[buf[i] >> 4];
        out += hex[buf[i] & 15];
    }
    return out;
}

}  // namespace tandem::cloud
