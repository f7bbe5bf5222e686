// ExtractiveGenerator: the best sentence of each retrieved passage.
#include "tandem/cloud/generator.h"

#include <algorithm>
#include <set>

#include "tandem/cloud/corpus.h"
#include "tandem/memory_store.h"  // fts5_terms

namespace tandem::cloud {

std::set<std::string> term_stems(std::string_view text, size_t max_terms) {
    std::set<std::string> out;
    for (const std::string& t : fts5_terms(text, max_terms)) out.insert(t.substr(0, 5));
    return out;
}

size_t passage_of_note(const std::vector<std::string>& passages, std::string_view note) {
    std::string_view quote = note;
    if (quote.size() > 3 && quote.substr(quote.size() - 3) == "...") quote.remove_suffix(3);
    if (!quote.empty())
        for (size_t i = 0; i < passages.size(); i++)
            if (passages[i].find(quote) != std::string::npos) return i;
    const std::set<std::string> want = term_stems(note, 256);
    size_t best = 0, best_hits = 0;
    for (size_t i = 0; i < passages.size(); i++) {
        size_t hits = 0;
        for (const std::string& s : term_stems(passages[i], 1024)) hits += want.count(s);
        if (hits > best_hits) best = i, best_hits = hits;
    }
    return best;
}

static std::string shorten(const std::string& s, size_t max_chars) {
    if (s.size() <= max_chars) return s;
    size_t cut = s.rfind(' ', max_chars - 3);
    if (cut == std::string::npos || cut < max_chars / 2) cut = max_chars - 3;
    while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80) cut--;  // not inside a UTF-8 char
    return s.substr(0, cut) + "...";
}

std::vector<NewNote> ExtractiveGenerator::generate(const std::string& context,
                                                   const std::vector<Passage>& passages, size_t max_items) {
    const std::set<std::string> want = term_stems(context, 64);
    // Per passage (best first): its sentences that share context terms, most shared first;
    // on a tie the shorter sentence (a tighter note).
    struct Cand {
        int hits;
        std::string text;
    };
    std::vector<std::vector<Cand>> per_passage;
    for (const Passage& p : passages) {
        std::vector<Cand> cands;
        for (const std::string& s : split_sentences(p.text)) {
            if (s.size() < 30) continue;  // headings, fragments
            std::set<std::string> hit;
            for (const std::string& t : term_stems(s, 256))
                if (want.count(t)) hit.insert(t);
            if (!hit.empty()) cands.push_back({(int)hit.size(), s});
        }
        std::stable_sort(cands.begin(), cands.end(), [](const Cand& a, const Cand& b) {
            return a.hits != b.hits ? a.hits > b.hits : a.text.size() < b.text.size();
        });
        per_passage.push_back(std::move(cands));
    }
    // Round robin: the best sentence of every passage first, then the second best, ...
    std::vector<NewNote> out;
    std::set<std::string> seen;
    for (size_t round = 0; out.size() < max_items; round++) {
        bool any = false;
        for (size_t i = 0; i < passages.size() && out.size() < max_items; i++) {
            if (round >= per_passage[i].size()) continue;
            any = true;
            std::string text = shorten(per_passage[i][round].text, max_chars_);
            if (!seen.insert(text).second) continue;
            out.push_back({text, passages[i].doc_id, passages[i].title, method()});
        }
        if (!any) break;
    }
    return out;
}

}  // namespace tandem::cloud
