// Drafts from UNGD speeches: sentence offsets, seeded cut points, prefix windows.
#include "drafts.h"

#include <algorithm>
#include <stdexcept>

#include "tandem/cloud/corpus.h"  // examples/cloud_server: for_each_ungd_speech, split_sentences

namespace tandem::eval {

// ---- seeded choices ----------------------------------------------------------------------

uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t fnv1a(const std::string& s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
    return h;
}

// ---- loading -----------------------------------------------------------------------------

std::vector<Speech> load_speeches(const std::string& path, int min_year, int max_year) {
    std::vector<Speech> out;
    // CorpusError is a std::runtime_error naming the file and line.
    cloud::for_each_ungd_speech(path, min_year, max_year, [&](cloud::UngdSpeech&& s) {
        out.push_back({std::move(s.id), std::move(s.country), s.year, std::move(s.text)});
    });
    return out;
}

// ---- sentences with their places in the text ----------------------------------------------

using Span = SentenceSpan;

std::vector<SentenceSpan> sentence_spans(const std::string& text) {
    std::vector<Span> spans;
    size_t pos = 0;
    for (const std::string& s : cloud::split_sentences(text)) {
        const size_t b = text.find(s, pos);
        if (b == std::string::npos) throw std::logic_error("split_sentences returned text not in the speech");
        spans.push_back({b, b + s.size()});
        pos = b + s.size();
    }
    return spans;
}

// The text of sentences [.., k) within max_chars, starting at a sentence start (just sentence
// k-1 when it alone is longer). "" when k <= 0.
static std::string window_before(const std::string& text, const std::vector<Span>& sp, int k, int max_chars) {
    if (k <= 0) return "";
    const size_t end = sp[(size_t)k - 1].end;
    int j = k - 1;
    while (j > 0 && end - sp[(size_t)j - 1].begin <= (size_t)max_chars) j--;
    return text.substr(sp[(size_t)j].begin, end - sp[(size_t)j].begin);
}

// ---- drafts ------------------------------------------------------------------------------

static void check_options(const DraftOptions& o) {
    auto need = [](bool ok, const char* what) {
        if (!ok) throw std::invalid_argument(std::string("DraftOptions: ") + what);
    };
    need(o.min_prefix_sentences >= 1, "min_prefix_sentences must be >= 1");
    need(o.truth_sentences >= 1, "truth_sentences must be >= 1");
    need(o.max_prefix_chars >= 1, "max_prefix_chars must be >= 1");
    need(o.stale_sentences >= 0, "stale_sentences must be >= 0");
    need(o.drafts_per_speech >= 1, "drafts_per_speech must be >= 1");
    need(o.min_truth_chars >= 0, "min_truth_chars must be >= 0");
}

std::vector<Draft> make_drafts(const std::vector<Speech>& speeches, const DraftOptions& o, uint64_t seed) {
    check_options(o);
    std::vector<Draft> out;
    for (const Speech& s : speeches) {
        const std::vector<Span> sp = sentence_spans(s.text);
        const int n = (int)sp.size();
        const auto truth_span = [&](int k) -> Span { return {sp[(size_t)k].begin, sp[(size_t)k + o.truth_sentences - 1].end}; };
        std::vector<int> cuts;
        for (int k = o.min_prefix_sentences; k + o.truth_sentences <= n; k++) {
            const Span t = truth_span(k);
            if (t.end - t.begin >= (size_t)o.min_truth_chars) cuts.push_back(k);
        }
        // drafts_per_speech distinct cuts: a partial Fisher-Yates shuffle.
        uint64_t state = mix64(seed ^ fnv1a(s.id));
        const size_t want = std::min(cuts.size(), (size_t)o.drafts_per_speech);
        for (size_t i = 0; i < want; i++) {
            state = mix64(state);
            const size_t j = i + (size_t)(state % (uint64_t)(cuts.size() - i));
            std::swap(cuts[i], cuts[j]);
        }
        cuts.resize(want);
        std::sort(cuts.begin(), cuts.end());
        for (int k : cuts) {
            Draft d;
            d.speech_id = s.id;
            d.country = s.country;
            d.year = s.year;
            d.cut_sentence = k;
            d.prefix = window_before(s.text, sp, k, o.max_prefix_chars);
            const Span t = truth_span(k);
            d.truth = s.text.substr(t.begin, t.end - t.begin);
            d.gap = s.text.substr(sp[(size_t)k - 1].end, t.begin - sp[(size_t)k - 1].end);
            d.stale_prefix = window_before(s.text, sp, k - o.stale_sentences, o.max_prefix_chars);
            out.push_back(std::move(d));
        }
    }
    return out;
}

}  // namespace tandem::eval
