// SIGBUS from a model file that changed under its mapping.
//
// GgufFile maps model files read-only (MAP_SHARED). When such a file is truncated or rewritten
// in place while mapped, the next read of a page past its new end raises SIGBUS, which kills
// the process without a word. report_mapping_faults() installs a SIGBUS handler that, for a
// fault inside a mapped model file, writes
//
//   tandem: model file PATH changed on disk while in use (truncated or rewritten in place; it
//   had N bytes when opened, byte M is gone); stopping
//
// to stderr and ends the process with exit status 1. Continuing is not safe (the faulting
// read was in the middle of a kernel), so this turns a silent crash into a clear error, not
// into recovery. Faults at other addresses keep the default action (a crash, a core dump).
// Replacing a model by writing a new file and renaming it over the old one is safe: the
// mapping keeps the old file.
//
// The library never installs the handler by itself: programs call report_mapping_faults()
// once at start (the tandem CLI, tandem-compose and tandem-cloud do). Thread-safe, idempotent.
// Needs SA_SIGINFO's si_addr (Linux and the BSDs); elsewhere it does nothing.
#pragma once
#include <cstddef>
#include <string>

namespace tandem {

void report_mapping_faults();

// The registry the handler reads, kept by GgufFile: a mapping of `size` bytes of `path` at
// `base`. At most 64 at once (more are mapped but not reported); the path is cut at 255 bytes.
void register_mapping(const void* base, size_t size, const std::string& path);
void unregister_mapping(const void* base);

}  // namespace tandem
