// libFuzzer target for the memory store's search (MemoryStore::retrieve and coverage), which
// takes whatever the writer's document holds: the header says any text is safe, since the FTS5
// query is built by fts5_match_query and never from the text's own syntax. A store with notes
// in several scripts is made once; each input's first byte picks the query term count (1-16),
// max_items (1-5), the budget and whether a document is preferred; the rest is the window. retrieve must not throw and must keep to max_items
// and the budget; coverage must not throw and is >= 0; every query term must be a quoted run
// of word bytes.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/memory_store.h"

using namespace tandem;

static void check(bool ok) {
    if (!ok) std::abort();
}

static std::string g_path;  // the store's file, removed at exit

static void remove_store() {
    for (const char* suffix : {"", "-wal", "-shm"}) std::remove((g_path + suffix).c_str());
}

static MemoryStore& store() {
    static MemoryStore* s = [] {
        g_path = "/tmp/fuzz-memory-retrieve-" + std::to_string(getpid()) + ".db";
        remove_store();
        std::atexit(remove_store);
        MemoryStoreParams p;
        p.path = g_path;
        auto* st = new MemoryStore(p);
        const char* texts[] = {
            "Glaciers are melting faster than predicted.", "The oceans absorb a quarter of our emissions.",
            "Coral reefs bleach when the sea warms.", "Les glaciers fondent plus vite que prévu.",
            "Ледники тают быстрее, чем ожидалось.", "氷河は予想より速く溶けている。",
            "AND OR NOT NEAR * ^ : ( ) \" - + are just words here", "The General Assembly adopted the treaty in 1996.",
        };
        std::vector<MemoryChange> page;
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
            MemoryChange c;
            c.item.id = "n" + std::to_string(i);
            c.item.text = texts[i];
            c.item.title = i % 2 ? "Climate" : "Oceans";
            c.item.document = i % 3 ? "doc-a" : "";
            page.push_back(c);
        }
        st->apply_changes(page, "1");
        return st;
    }();
    return *s;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const std::string_view window((const char*)data + 1, size - 1);
    RetrieveParams rp;
    rp.max_query_terms = data[0] % 16 + 1;
    rp.max_items = data[0] % 5 + 1;
    rp.budget = (data[0] >> 4) * 20 + 1;
    if (data[0] & 0x80) rp.prefer_document = "doc-a";
    rp.cost = [](std::string_view text) { return text.size(); };
    MemoryStore& s = store();
    const std::vector<MemoryItem> got = s.retrieve(window, rp);
    check(got.size() <= rp.max_items);
    size_t cost = 0;
    for (const MemoryItem& it : got) cost += it.text.size();
    check(cost <= rp.budget);
    check(s.coverage(window) >= 0);
    const std::string q = fts5_match_query(window, rp.max_query_terms);
    for (const std::string& t : fts5_terms(window, rp.max_query_terms)) {
        check(!t.empty() && q.find('"' + t + '"') != std::string::npos);
        for (unsigned char c : t) check(c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'));
    }
    return 0;
}
