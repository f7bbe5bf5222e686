// Random ids for tandem-cloud (item ids, feed tags and epochs, completion ids): bytes from the
// kernel's CSPRNG (getrandom), so that an id can be neither guessed nor counted.
#pragma once
#include <cstddef>
#include <string>

namespace tandem::cloud {

// n random bytes (n <= 32) as 2n lowercase hex digits. Throws std::runtime_error when the
// kernel gives none.
std::string random_hex(size_t n);

}  // namespace tandem::cloud
