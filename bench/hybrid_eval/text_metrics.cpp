// ROUGE-L, chrF and the paired bootstrap (see text_metrics.h).
#include "text_metrics.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <unordered_map>

#include "drafts.h"  // mix64

namespace tandem::eval {

// ---- ROUGE-L -----------------------------------------------------------------------------

std::vector<std::string> rouge_tokens(std::string_view text) {
    std::vector<std::string> out;
    std::string cur;
    for (unsigned char c : text) {
        const bool word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
        if (word) {
            cur += (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : (char)c;
        } else if (!cur.empty()) {
            out.push_back(std::move(cur));
            cur.clear();
        }
    }
    if (!cur.empty()) out.push_back(std::move(cur));
    return out;
}

// Length of the longest common subsequence, two rows of the usual table.
static size_t lcs_length(const std::vector<std::string>& a, const std::vector<std::string>& b) {
    std::vector<size_t> prev(b.size() + 1, 0), cur(b.size() + 1, 0);
    for (size_t i = 1; i <= a.size(); i++) {
        for (size_t j = 1; j <= b.size(); j++)
            cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

double rouge_l_f1(std::string_view hyp, std::string_view ref) {
    const std::vector<std::string> h = rouge_tokens(hyp), r = rouge_tokens(ref);
    if (h.empty() || r.empty()) return 0;
    const double lcs = (double)lcs_length(h, r);
    if (lcs == 0) return 0;
    const double p = lcs / (double)h.size(), rec = lcs / (double)r.size();
    return 2 * p * rec / (p + rec);
}

// ---- chrF --------------------------------------------------------------------------------

// The text without white space, and the byte offset where each code point starts (plus the
// end), so that an n-gram is a byte range.
struct Chars {
    std::string text;
    std::vector<size_t> starts;
};

static Chars chars_of(std::string_view s) {
    Chars c;
    for (size_t i = 0; i < s.size();) {
        const unsigned char b = (unsigned char)s[i];
        size_t len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xe ? 3 : (b >> 3) == 0x1e ? 4 : 1;
        if (i + len > s.size()) len = 1;
        for (size_t k = 1; k < len; k++)
            if (((unsigned char)s[i + k] >> 6) != 0x2) len = 1;  // not a continuation: a lone byte
        // Python's str.split() white space (ASCII part), plus NBSP as UTF-8
        const bool space = (len == 1 && (b == ' ' || (b >= '\t' && b <= '\r') || (b >= 0x1c && b <= 0x1f))) ||
                           (len == 2 && b == 0xc2 && (unsigned char)s[i + 1] == 0xa0);
        if (!space) {
            c.starts.push_back(c.text.size());
            c.text.append(s.substr(i, len));
        }
        i += len;
    }
    c.starts.push_back(c.text.size());
    return c;
}

double chrf(std::string_view hyp, std::string_view ref) {
    constexpr int kOrder = 6;
    constexpr double kBeta = 2;
    const Chars h = chars_of(hyp), r = chars_of(ref);
    const size_t nh = h.starts.size() - 1, nr = r.starts.size() - 1;
    double avg_p = 0, avg_r = 0;
    int effective = 0;
    for (size_t n = 1; n <= (size_t)kOrder; n++) {
        if (nh < n || nr < n) continue;  // an order one side lacks does not count
        std::unordered_map<std::string_view, int> ref_counts;
        for (size_t i = 0; i + n <= nr; i++)
            ref_counts[std::string_view(r.text).substr(r.starts[i], r.starts[i + n] - r.starts[i])]++;
        size_t match = 0;
        for (size_t i = 0; i + n <= nh; i++) {
            auto it = ref_counts.find(std::string_view(h.text).substr(h.starts[i], h.starts[i + n] - h.starts[i]));
            if (it != ref_counts.end() && it->second > 0) {
                it->second--;
                match++;
            }
        }
        avg_p += (double)match / (double)(nh - n + 1);
        avg_r += (double)match / (double)(nr - n + 1);
        effective++;
    }
    if (effective == 0) return 0;
    avg_p /= effective;
    avg_r /= effective;
    if (avg_p + avg_r == 0) return 0;
    const double b2 = kBeta * kBeta;
    return 100 * (1 + b2) * avg_p * avg_r / (b2 * avg_p + avg_r);
}

// ---- paired bootstrap --------------------------------------------------------------------

Interval paired_bootstrap(const std::vector<double>& a, const std::vector<double>& b, int resamples, uint64_t seed) {
    if (a.size() != b.size())
        throw std::invalid_argument("paired_bootstrap: " + std::to_string(a.size()) + " values in a but " +
                                    std::to_string(b.size()) + " in b");
    if (a.empty()) throw std::invalid_argument("paired_bootstrap: no pairs");
    if (resamples < 1) throw std::invalid_argument("paired_bootstrap: resamples must be >= 1");
    const size_t n = a.size();
    std::vector<double> d(n);
    double mean = 0;
    for (size_t i = 0; i < n; i++) {
        d[i] = a[i] - b[i];
        mean += d[i];
    }
    mean /= (double)n;
    std::vector<double> means((size_t)resamples);
    uint64_t state = mix64(seed);
    for (double& m : means) {
        double s = 0;
        for (size_t i = 0; i < n; i++) {
            state = mix64(state);
            s += d[(size_t)(state % n)];
        }
        m = s / (double)n;
    }
    std::sort(means.begin(), means.end());
    const size_t R = means.size();
    const size_t lo = (size_t)std::floor(0.025 * (double)R);
    const size_t hi = std::min(R - 1, (size_t)std::max(0.0, std::ceil(0.975 * (double)R) - 1));
    return {mean, means[lo], means[hi]};
}

}  // namespace tandem::eval
