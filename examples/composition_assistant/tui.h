// The composition assistant's line mode (--tui): for quick use without a browser.
//
//   a line of text   appended to the document (joined by a space; an empty line starts a new
//                    paragraph), then the suggestion for the end of the document is printed
//   /accept          appends the last suggestion
//   /ask QUESTION    asks (routed local or cloud); prints the answer and who answered, and why
//   /notes           the memory notes most relevant to the document, with their sources
//   /doc             prints the document;  /usage  the usage numbers;  /help;  /quit
//
// Reads `in` until end of input or /quit; writes to `out`. `color` adds ANSI grey for ghost text.
#pragma once
#include <iosfwd>

#include "tandem/assistant.h"

namespace tandem::compose {

// Returns 0 at /quit or end of input.
int run_tui(Assistant& assistant, std::istream& in, std::ostream& out, bool color);

}  // namespace tandem::compose
