// The composition assistant's line mode (--tui): for quick use without a browser.
//
//   a line of text   appended to the document (joined by a space; an empty line starts a new
//                    paragraph), then the suggestion for the end of the document is printed
//   /accept          appends the last suggestion
//   /ask QUESTION    asks (routed local or cloud); prints the answer and who answered, and why
//   /notes           the memory notes most relevant to the document, with their sources
//   /doc             prints the document;  /usage  the usage numbers;  /help;  /quit
//   /cloud [URL [TOKEN]]  prints the cloud's URL and whether it is online, or points the memory
//                    sync and cloud asks at URL ("none": no cloud) with TOKEN ("-": none), else
//                    with `cloud_token`, which goes only to the site it was given for (any
//                    port): another site without TOKEN is refused
//
// Reads `in` until end of input or /quit; writes to `out`. `color` adds ANSI grey for ghost text.
#pragma once
#include <iosfwd>
#include <string>

#include "tandem/assistant.h"

namespace tandem::compose {

// Returns 0 at /quit or end of input.
// `cloud_token` is the token the Assistant was created with (for /cloud).
int run_tui(Assistant& assistant, std::istream& in, std::ostream& out, bool color, const std::string& cloud_token = "");

}  // namespace tandem::compose
