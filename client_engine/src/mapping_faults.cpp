// The SIGBUS reporter for mapped model files (tandem/mapping_faults.h). The handler only reads
// lock-free slots and calls write(2) and _exit(2), both async-signal-safe.
#include "tandem/mapping_faults.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>

namespace tandem {

namespace {

// One mapping. `state`: 0 free, 1 being written, 2 published (the handler reads only 2).
struct Slot {
    std::atomic<int> state{0};
    std::atomic<uintptr_t> base{0};
    std::atomic<size_t> size{0};
    char path[256] = {};
};
Slot g_slots[64];
struct sigaction g_previous;

void write_str(const char* s) {
    size_t n = std::strlen(s);
    while (n > 0) {
        const ssize_t w = ::write(2, s, n);
        if (w <= 0) return;
        s += w, n -= (size_t)w;
    }
}

void write_u64(uint64_t v) {
    char buf[24];
    char* p = buf + sizeof buf;
    *--p = '\0';
    do *--p = char('0' + v % 10); while ((v /= 10) != 0);
    write_str(p);
}

void on_sigbus(int sig, siginfo_t* info, void* ctx) {
    const uintptr_t addr = reinterpret_cast<uintptr_t>(info->si_addr);
    for (Slot& s : g_slots) {
        if (s.state.load(std::memory_order_acquire) != 2) continue;
        const uintptr_t base = s.base.load(std::memory_order_relaxed);
        const size_t size = s.size.load(std::memory_order_relaxed);
        if (addr < base || addr - base >= size) continue;
        write_str("tandem: model file ");
        write_str(s.path);
        write_str(" changed on disk while in use (truncated or rewritten in place; it had ");
        write_u64(size);
        write_str(" bytes when opened, byte ");
        write_u64(addr - base);
        write_str(" is gone); stopping\n");
        ::_exit(1);
    }
    // Not ours: the previous disposition, usually the default crash.
    if (g_previous.sa_flags & SA_SIGINFO) {
        if (g_previous.sa_sigaction) return g_previous.sa_sigaction(sig, info, ctx);
    } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
        return g_previous.sa_handler(sig);
    }
    ::signal(SIGBUS, SIG_DFL);  // returning re-executes the faulting read: the default action then
}

}  // namespace

void report_mapping_faults() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa{};
        sa.sa_sigaction = on_sigbus;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        ::sigaction(SIGBUS, &sa, &g_previous);
    });
}

void register_mapping(const void* base, size_t size, const std::string& path) {
    for (Slot& s : g_slots) {
        int expected = 0;
        if (!s.state.compare_exchange_strong(expected, 1, std::memory_order_acquire)) continue;
        std::strncpy(s.path, path.c_str(), sizeof s.path - 1);
        s.path[sizeof s.path - 1] = '\0';
        s.base.store(reinterpret_cast<uintptr_t>(base), std::memory_order_relaxed);
        s.size.store(size, std::memory_order_relaxed);
        s.state.store(2, std::memory_order_release);
        return;
    }
}

void unregister_mapping(const void* base) {
    for (Slot& s : g_slots) {
        if (s.state.load(std::memory_order_acquire) != 2 || s.base.load() != reinterpret_cast<uintptr_t>(base)) continue;
        s.state.store(1, std::memory_order_release);  // the handler stops looking at it first
        s.base.store(0);
        s.state.store(0, std::memory_order_release);
        return;
    }
}

}  // namespace tandem
