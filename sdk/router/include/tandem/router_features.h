// Router features: what the router sees of a query, computed on the device only.
//
// A query becomes one FeatureVector:
//
//   part      | what                                            | value
//   ----------+-------------------------------------------------+---------------------------
//   sparse    | hashed word unigrams and bigrams                | 1.0 per distinct bucket hit
//   dense[0]  | len_chars  = ln(1 + number of code points)      | standardised (see below)
//   dense[1]  | len_words  = ln(1 + number of words)            | standardised
//   dense[2..]| the caller's signals the router was trained with| standardised
//             | in the fixed order of kSignalNames              |
//
// Words: the query is decoded as UTF-8 (an invalid byte is a separator, never a crash) and
// lower-cased with simple one-to-one folding for ASCII, Latin-1, Latin Extended-A, Greek and
// Cyrillic (other scripts are left as they are). A word is a maximal run of word code points:
// ASCII letters and digits, the apostrophe inside a word, and every code point >= U+0080 that is
// not listed as punctuation or space in is_separator() (router_features.cpp). CJK ideographs
// and kana (U+3040-U+30FF, U+3400-U+4DBF, U+4E00-U+9FFF, U+F900-U+FAFF) are one word each,
// since those scripts do not put spaces between words.
//
// Hashing: FNV-1a, 32 bit (offset basis 2166136261, prime 16777619), over the UTF-8 bytes of
// the lower-cased word for a unigram, and of "w1 w2" (one ASCII space between) for a bigram;
// bucket = hash & (2^hash_bits - 1). Words never contain a space, so the two never alias
// except through bucket collisions. The same query always gives the same buckets on every
// platform (no std::hash, no seed).
//
// Standardisation: z = (x - mean) / std with mean and std measured on the training set and
// saved with the router (std 0 is stored as 1).
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tandem {

// Every error of the router library: bad data files (message "FILE:LINE: field 'F': why"),
// bad or incompatible router files ("FILE: field 'F': why"), missing signals, bad arguments.
class RouterError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Signals the caller may supply beside the query text. Each is optional; a router records which
// ones it was trained with (FeatureConfig::signals) and scoring a query without one of those
// is an error (RouterError naming the signal): no silent imputation.
struct RouterSignals {
    std::optional<double> query_logprob_mean;  // small model's mean token log-prob of the query (<= 0)
    std::optional<double> gen_entropy;         // mean entropy (nats) of its first k generated tokens
    std::optional<double> memory_coverage;     // best bm25 score of the query against the memory store
};

enum class Signal : int { query_logprob_mean = 0, gen_entropy = 1, memory_coverage = 2 };
constexpr int kSignalCount = 3;
// Names as used in JSONL rows, router files and feature names; indexed by Signal.
extern const std::array<const char*, kSignalCount> kSignalNames;

// Returns the signal's value in `s`, or nullopt when the caller did not supply it.
std::optional<double> signal_value(const RouterSignals& s, Signal which);

// What a router's features are; saved in the router file under "features".
struct FeatureConfig {
    int hash_bits = 16;               // 2^hash_bits n-gram buckets; 8..24
    bool bigrams = true;              // unigrams are always on
    std::vector<Signal> signals;      // signals trained with, in kSignalNames order, no repeats
    std::vector<double> dense_mean;   // (n_dense) standardisation, filled by training
    std::vector<double> dense_std;    // (n_dense)

    int n_buckets() const { return 1 << hash_bits; }
    int n_dense() const { return 2 + (int)signals.size(); }
    // Name of dense feature i: "len_chars", "len_words", "signal:<name>".
    std::string dense_name(int i) const;
};

struct FeatureVector {
    std::vector<uint32_t> buckets;    // (n_active) distinct bucket ids, ascending
    std::vector<std::string> names;   // (n_active) first n-gram that hit each bucket: "uni:w", "bi:w1 w2"
    std::vector<double> dense;        // (n_dense) raw values, not yet standardised
};

// FNV-1a 32-bit hash of `bytes` (see the table above).
uint32_t fnv1a32(std::string_view bytes);

// Splits `text` into lower-cased words (rules above). Never throws on bad UTF-8.
std::vector<std::string> router_words(std::string_view text);

// Computes the features of one query. `want_names` fills FeatureVector::names (used to explain
// a decision; skip it on the hot path). Throws RouterError when a signal in cfg.signals is
// missing from `signals`, or is not finite. Thread-safe (no shared state).
FeatureVector extract_features(const FeatureConfig& cfg, std::string_view query,
                               const RouterSignals& signals, bool want_names);

}  // namespace tandem
