// The suggestion rules (tandem/suggest_text.h): sentence and line ends across streamed pieces,
// token healing of the word at the cursor, no line break first, no repeated n-grams, and
// whole suggestions from the demo client model.
#include <cmath>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "tandem/engine.h"
#include "tandem/gguf.h"
#include "tandem/suggest_prompt.h"
#include "tandem/suggest_text.h"
#include "test_util.h"

using namespace tandem;
using tandem_test::shared_path;

static const Tokenizer& demo_tokenizer() {
    static const Tokenizer tok = Tokenizer::from_gguf(GgufFile::open(shared_path("models/tandem-demo-client-q8_0.gguf")));
    return tok;
}

// The prompt suggest() builds for `before` (no notes).
static std::vector<int32_t> prompt_for(const Tokenizer& tok, const std::string& before) {
    size_t ws = 0;
    return build_suggest_prompt(tok, {}, before, 2048, 32, &ws);
}

// Pushes pieces through a shaper; returns the ghost text and whether it ended.
static std::pair<std::string, bool> shape(const std::vector<std::string>& pieces, SuggestEnd end = SuggestEnd::sentence,
                                          const std::string& before = "The Assembly met,") {
    SuggestRules rules;
    rules.end = end;
    SuggestionShaper s(demo_tokenizer(), prompt_for(demo_tokenizer(), before), before, rules);
    std::string out;
    for (const auto& p : pieces)
        if (!s.push(p, out)) return {out, true};
    s.finish(out);
    return {out, false};
}

TEST_CASE("sentence_start: after the last sentence end or line break") {
    CHECK(sentence_start("") == 0);
    CHECK(sentence_start("We met. The Assembly") == 8);
    CHECK(sentence_start("We met.  The") == 9);
    CHECK(sentence_start("Is it? Yes! And") == 12);
    CHECK(sentence_start("He said \"go.\" Then") == 14);
    CHECK(sentence_start("Mr. Smith and Dr. Jones met J. Doe") == 0);  // abbreviations and initials
    CHECK(sentence_start("It grew 3.5 per cent. Then") == 22);
    CHECK(sentence_start("First line\nsecond") == 11);
    CHECK(sentence_start("Ends here.") == 0);  // no white space after the period yet
}

TEST_CASE("the suggestion ends after the sentence it completes, or before a line break") {
    CHECK(shape({" for", " peace", ".", " The", " next"}) == std::make_pair(std::string(" for peace."), true));
    CHECK(shape({" for", " peace.", "\n"}) == std::make_pair(std::string(" for peace."), true));
    CHECK(shape({" and", " security", "\nThe"}) == std::make_pair(std::string(" and security"), true));
    CHECK(shape({" said", " \"yes", ".\"", " Then"}) == std::make_pair(std::string(" said \"yes.\""), true));
    CHECK(shape({" with", " Mr", ".", " Smith", " today", "."}) == std::make_pair(std::string(" with Mr. Smith today."), false));
    CHECK(shape({" grew", " 3", ".", "5", " per", " cent", "!", " Then"}) ==
          std::make_pair(std::string(" grew 3.5 per cent!"), true));
    CHECK(shape({" at", " last"}) == std::make_pair(std::string(" at last"), false));  // the cap: all of it
    // A trailing period is held back until the next piece says whether it ends the sentence.
    SuggestionShaper s(demo_tokenizer(), prompt_for(demo_tokenizer(), "x"), "x", SuggestRules{});
    std::string out;
    CHECK(s.push(" peace.", out));
    CHECK(out == " peace");
    CHECK(s.push("5", out));
    CHECK(out == " peace.5");
    // line: only line breaks end it; paragraph: everything passes (the stop "\n\n" ends it)
    CHECK(shape({" for", " peace.", " The", "\nNext"}, SuggestEnd::line) == std::make_pair(std::string(" for peace. The"), true));
    CHECK(shape({" for", " peace.", "\nThe"}, SuggestEnd::paragraph) == std::make_pair(std::string(" for peace.\nThe"), false));
}

TEST_CASE("token healing: the partial word's tokens are respelled, the ghost text is what follows") {
    const Tokenizer& tok = demo_tokenizer();
    const std::string before = "We the peoples of the United Nat";
    const std::vector<int32_t> prompt = prompt_for(tok, before);
    SuggestionShaper s(tok, prompt, before, SuggestRules{});
    REQUIRE(s.prompt().size() < prompt.size());
    CHECK(std::equal(s.prompt().begin(), s.prompt().end(), prompt.begin()));
    CHECK(s.respell().size() >= 3);
    CHECK(before.compare(before.size() - s.respell().size(), std::string::npos, s.respell()) == 0);
    // Only tokens that agree with the respelling may come first.
    std::vector<float> logits(tok.n_tokens(), 0.0f);
    s.filter(logits.data(), (int64_t)logits.size(), {});
    const std::vector<int32_t> nations = tok.encode(" Nations", false);
    REQUIRE(nations.size() == 1);
    CHECK(logits[nations[0]] == 0.0f);
    const std::vector<int32_t> and_ = tok.encode(" and", false);
    CHECK(std::isinf(logits[and_[0]]));
    size_t allowed = 0;
    for (float l : logits) allowed += !std::isinf(l);
    CHECK(allowed >= 1);
    CHECK(allowed < logits.size() / 10);
    // The respelled bytes never show.
    std::string out;
    CHECK(s.push(s.respell().substr(0, 1), out));
    CHECK(s.push(s.respell().substr(1) + "ions", out));
    CHECK(out == "ions");

    // A trailing space is respelled too: the model's words carry their space.
    const std::string spaced = "We the peoples of the ";
    SuggestionShaper sp(tok, prompt_for(tok, spaced), spaced, SuggestRules{});
    CHECK(sp.respell() == " ");
    out.clear();
    CHECK(sp.push(" United", out));
    CHECK(out == "United");
    // No partial word (punctuation, a line break) or the rule off: the prompt as it was.
    for (const std::string b : {"We the peoples,", "We the peoples.\n"}) {
        SuggestionShaper t(tok, prompt_for(tok, b), b, SuggestRules{});
        CHECK(t.respell().empty());
        CHECK(t.prompt() == prompt_for(tok, b));
    }
    SuggestRules off;
    off.complete_words = false;
    CHECK(SuggestionShaper(tok, prompt, before, off).prompt() == prompt);
}

TEST_CASE("the first token shown is never a line break; no n-gram of the last two sentences repeats") {
    const Tokenizer& tok = demo_tokenizer();
    const std::vector<int32_t> nl = tok.encode("\n", false);
    REQUIRE(nl.size() == 1);
    const std::string done = "The Assembly met.";
    std::vector<float> logits(tok.n_tokens(), 0.0f);
    SuggestionShaper(tok, prompt_for(tok, done), done, SuggestRules{}).filter(logits.data(), (int64_t)logits.size(), {});
    CHECK(std::isinf(logits[nl[0]]));
    SuggestRules para;
    para.end = SuggestEnd::paragraph;
    std::fill(logits.begin(), logits.end(), 0.0f);
    SuggestionShaper(tok, prompt_for(tok, done), done, para).filter(logits.data(), (int64_t)logits.size(), {});
    CHECK(logits[nl[0]] == 0.0f);

    // "... crisis of confidence. The United Nations is facing a crisis of" -> " confidence" banned
    // (token healing off: "of" would be respelled first).
    SuggestRules rules;
    rules.complete_words = false;
    const std::string loop = "We met again. The United Nations is facing a crisis of confidence. "
                             "The United Nations is facing a crisis of";
    const std::vector<int32_t> conf = tok.encode(" confidence", false);
    REQUIRE(conf.size() == 1);
    std::fill(logits.begin(), logits.end(), 0.0f);
    SuggestionShaper(tok, prompt_for(tok, loop), loop, rules).filter(logits.data(), (int64_t)logits.size(), {});
    CHECK(std::isinf(logits[conf[0]]));
    size_t banned = 0;  // besides the line breaks
    for (size_t id = 0; id < logits.size(); id++) {
        const char c = tok.token_bytes((int32_t)id)[0];
        banned += std::isinf(logits[id]) && c != '\n' && c != '\r';
    }
    CHECK(banned == 1);
    SuggestRules no_ngram = rules;
    no_ngram.no_repeat_ngram = 0;
    std::fill(logits.begin(), logits.end(), 0.0f);
    SuggestionShaper(tok, prompt_for(tok, loop), loop, no_ngram).filter(logits.data(), (int64_t)logits.size(), {});
    CHECK(logits[conf[0]] == 0.0f);
    // Beyond the previous sentence (and in the notes ahead of the document) repeats are allowed.
    const std::string far = "The United Nations is facing a crisis of confidence. We met. Then we spoke. "
                            "The United Nations is facing a crisis of";
    std::fill(logits.begin(), logits.end(), 0.0f);
    SuggestionShaper(tok, prompt_for(tok, far), far, rules).filter(logits.data(), (int64_t)logits.size(), {});
    CHECK(logits[conf[0]] == 0.0f);
    size_t ws = 0;
    const std::string tail = "The United Nations is facing a crisis of";
    const auto with_note = build_suggest_prompt(tok, {"The United Nations is facing a crisis of confidence."}, tail, 2048, 32, &ws);
    std::fill(logits.begin(), logits.end(), 0.0f);
    SuggestionShaper(tok, with_note, tail, rules).filter(logits.data(), (int64_t)logits.size(), {});
    CHECK(logits[conf[0]] == 0.0f);
}

TEST_CASE("generate_suggestion on the demo model: one sentence, no line break, the partial word completed") {
    EngineParams ep;
    ep.context.n_ctx = 512;
    ep.context.n_threads = 2;
    auto engine = Engine::load(shared_path("models/tandem-demo-client-q8_0.gguf"), ep);
    const Tokenizer& tok = engine->tokenizer();
    GenerateParams gp;
    gp.max_tokens = 48;
    gp.sampling.temperature = 0;
    const std::string before = "The General Assembly meets at a time when the peoples of the world look to the United Nations for peace,";
    std::string streamed;
    const Generation g = generate_suggestion(*engine, prompt_for(tok, before), before, gp, SuggestRules{},
                                             [&](std::string_view p) { streamed += p; return true; });
    MESSAGE("suggestion: " << g.text);
    CHECK(streamed == g.text);
    CHECK(g.text.find('\n') == std::string::npos);
    REQUIRE(!g.text.empty());
    if (g.finish == FinishReason::Stop) CHECK(std::string(".!?").find(g.text.back()) != std::string::npos);
    CHECK(sentence_start(before + g.text + " ") == before.size() + g.text.size() + 1);  // exactly one sentence end, at its end

    // Mid-word: the suggestion continues the word (no space first) or, the word being complete,
    // starts the next one; never a new word glued to the half word.
    const std::string mid = "The General Assembly meets at a time when the peoples of the world look to the United Nations for pea";
    const Generation m = generate_suggestion(*engine, prompt_for(tok, mid), mid, gp, SuggestRules{});
    MESSAGE("mid-word suggestion: " << m.text);
    REQUIRE(!m.text.empty());
    CHECK(m.text.rfind("ce", 0) == 0);  // "peace": the model's greedy word here

    // After a finished sentence: the next sentence, not a line break.
    const std::string done = before + " security and co-operation.";
    const Generation n = generate_suggestion(*engine, prompt_for(tok, done), done, gp, SuggestRules{});
    MESSAGE("next sentence: " << n.text);
    REQUIRE(!n.text.empty());
    CHECK(n.text[0] == ' ');
}
