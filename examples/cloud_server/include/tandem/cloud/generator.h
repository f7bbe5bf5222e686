// Memory generation: retrieved passages + the client's context -> short notes with sources.
//
// MemoryGenerator is the seam for the model-backed generator: with --model, a generator backed
// by client_engine will prompt the cloud model for key takeaways of the passages relevant to
// the context ("List the key facts in these passages that help continue this text; one short
// sentence each; cite nothing else") and return one note per takeaway with method "llm". That
// engine does not exist yet, so tandem-cloud refuses --model instead of pretending.
//
// ExtractiveGenerator (method "extractive") picks, from each passage in rank order, its
// sentence with the most context terms, shortened to at most max_chars at a word boundary.
#pragma once
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/cloud/server_db.h"

namespace tandem::cloud {

class MemoryGenerator {
public:
    virtual ~MemoryGenerator() = default;
    // Notes for `context` from `passages` (best first), at most max_items; each note carries
    // the doc_id/title of its passage and method(). Must not throw on any text.
    virtual std::vector<NewNote> generate(const std::string& context, const std::vector<Passage>& passages,
                                          size_t max_items) = 0;
    virtual const char* method() const = 0;
};

class ExtractiveGenerator : public MemoryGenerator {
public:
    explicit ExtractiveGenerator(size_t max_chars = 280) : max_chars_(max_chars) {}
    std::vector<NewNote> generate(const std::string& context, const std::vector<Passage>& passages,
                                  size_t max_items) override;
    const char* method() const override { return "extractive"; }

private:
    size_t max_chars_;
};

// The stems of text's first max_terms words (fts5_terms, each cut to its first 5 bytes: a
// crude stem that credits inflected forms the FTS5 porter stemmer also matches, "nuclear" ~
// "nucle", "treaties" ~ "treat").
std::set<std::string> term_stems(std::string_view text, size_t max_terms);

// The index of the passage a note was made from: the first passage holding the note's text
// (an extractive note; a trailing "..." of a shortened note is ignored), else the passage
// sharing the most term stems with the note (a note the model wrote; the first on a tie).
// 0 when passages is empty.
size_t passage_of_note(const std::vector<std::string>& passages, std::string_view note);

}  // namespace tandem::cloud
