// The reference cloud's retrieval corpus: reading it from disk and cutting it into passages.
//
// Accepted --corpus values:
//   DIR             every .txt and .md file directly in DIR (sorted by name); doc_id = the
//                   file name, title = the name without its extension
//   FILE.txt|.md    that one file
//   FILE.jsonl[.xz] UN General Debate speeches, one JSON object a line with id, country, year,
//                   session, text; doc_id = id, title like "USA 2019 (UNGA 74)"; lines with
//                   year > max_year are skipped
#pragma once
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/cloud/server_db.h"

namespace tandem::cloud {

class CorpusError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Reads the corpus at path (see above). max_year <= 0: no year filter. Throws CorpusError
// naming the file (and line) on a missing path, an unreadable or malformed file, or an empty
// corpus.
std::vector<CorpusDoc> load_corpus(const std::string& path, int max_year);

// One speech of a UNGD .jsonl[.xz] file (the fields every line must have).
struct UngdSpeech {
    std::string id, country;
    int year = 0, session = 0;
    std::string text;
};

// Calls on_speech for each speech of the UNGD file at path (.jsonl or .jsonl.xz) with
// min_year <= year <= max_year (a bound <= 0: no bound), in file order; blank lines are
// skipped. Throws CorpusError naming the file and line on a missing file, bad xz data, a line
// that is not a JSON object or a missing/ill-typed field. Used by load_corpus and by the
// evaluation's draft maker (bench/hybrid_eval).
void for_each_ungd_speech(const std::string& path, int min_year, int max_year,
                          const std::function<void(UngdSpeech&&)>& on_speech);

// A string that changes when the corpus on disk (or the filter) changes: path, sizes, mtimes.
std::string corpus_signature(const std::string& path, int max_year);

// Sentences of text, in order, trimmed. Splits after . ! ? followed by white space (not after
// common abbreviations such as "Mr.") and at line breaks.
std::vector<std::string> split_sentences(std::string_view text);

// Groups sentences into passages of about target_chars, one sentence a line; a line break of
// the source ends a passage once it is at least half full.
std::vector<std::string> split_passages(std::string_view text, size_t target_chars = 700);

}  // namespace tandem::cloud
