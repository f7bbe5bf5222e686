// Tests of tandem::SseParser (cloud_adapter/include/tandem/sse_parser.h): the event-stream
// grammar, and that any split of the bytes into chunks gives the same events.
#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "tandem/sse_parser.h"

using tandem::SseEvent;
using tandem::SseParser;

namespace {

struct Collected {
    std::vector<SseEvent> events;
    bool finished_clean = false;
    bool ok = true;
};

// Feeds `stream` cut at the given offsets (sorted, each in (0, size)).
Collected parse_split(const std::string& stream, const std::vector<size_t>& cuts, size_t max_bytes = 1 << 20) {
    Collected c;
    SseParser p([&](const SseEvent& e) { c.events.push_back(e); }, max_bytes);
    size_t at = 0;
    for (size_t cut : cuts) {
        c.ok = p.feed(std::string_view(stream).substr(at, cut - at)) && c.ok;
        at = cut;
    }
    c.ok = p.feed(std::string_view(stream).substr(at)) && c.ok;
    c.finished_clean = p.finish();
    return c;
}

Collected parse(const std::string& stream) { return parse_split(stream, {}); }

std::vector<std::string> datas(const Collected& c) {
    std::vector<std::string> out;
    for (auto& e : c.events) out.push_back(e.data);
    return out;
}

}  // namespace

TEST_CASE("sse: header is self-contained and basic events dispatch on blank lines") {
    auto c = parse("data: hello\n\ndata: world\n\n");
    CHECK(c.ok);
    CHECK(c.finished_clean);
    CHECK(datas(c) == std::vector<std::string>{"hello", "world"});
}

TEST_CASE("sse: multi-line data is joined with newlines; fields with and without space") {
    auto c = parse("data: a\ndata:b\ndata:  c\ndata\n\n");
    REQUIRE(c.events.size() == 1);
    CHECK(c.events[0].data == "a\nb\n c\n");  // one leading space dropped; bare "data" = ""
}

TEST_CASE("sse: CRLF, lone CR and LF line endings, mixed") {
    CHECK(datas(parse("data: x\r\n\r\ndata: y\r\r")) == std::vector<std::string>{"x", "y"});
    CHECK(datas(parse("data: 1\r\ndata: 2\rdata: 3\n\r\n")) == std::vector<std::string>{"1\n2\n3"});
}

TEST_CASE("sse: a CRLF split between chunks is one line ending, not two") {
    // If the LF after a CR in the previous chunk were a new line, it would dispatch early.
    auto c = parse_split("data: a\r\ndata: b\r\n\r\n", {8});  // cut between \r and \n
    REQUIRE(c.events.size() == 1);
    CHECK(c.events[0].data == "a\nb");
}

TEST_CASE("sse: comments and unknown fields are ignored; keep-alive pings produce nothing") {
    auto c = parse(": ping\n\n:another\nfoo: bar\nretry: 10\ndata: z\n: mid-event comment\n\n");
    CHECK(datas(c) == std::vector<std::string>{"z"});
}

TEST_CASE("sse: event type and id are reported; events without data are dropped") {
    auto c = parse("event: update\nid: 7\ndata: {}\n\nevent: empty\n\ndata: next\n\n");
    REQUIRE(c.events.size() == 2);
    CHECK(c.events[0].type == "update");
    CHECK(c.events[0].id == "7");
    CHECK(c.events[1].type == "");  // the dropped event's type does not leak into the next one
    CHECK(c.events[1].data == "next");
}

TEST_CASE("sse: a UTF-8 BOM at the start is skipped, even split") {
    std::string s = "\xEF\xBB\xBF" "data: bom\n\n";
    CHECK(datas(parse(s)) == std::vector<std::string>{"bom"});
    CHECK(datas(parse_split(s, {1, 2})) == std::vector<std::string>{"bom"});
    // A BOM later in the stream is data, not skipped.
    CHECK(datas(parse("data: a\n\n\xEF\xBB\xBF" "data: b\n\n")).size() == 1);
}

TEST_CASE("sse: [DONE] and JSON with colons are plain data") {
    auto c = parse("data: {\"a\":\"b:c\"}\n\ndata: [DONE]\n\n");
    CHECK(datas(c) == std::vector<std::string>{"{\"a\":\"b:c\"}", "[DONE]"});
}

TEST_CASE("sse: an unterminated last event is not dispatched and finish() says so") {
    auto c = parse("data: complete\n\ndata: partial");
    CHECK(datas(c) == std::vector<std::string>{"complete"});
    CHECK_FALSE(c.finished_clean);
    auto d = parse("data: complete\n\ndata: no blank line\n");
    CHECK(datas(d) == std::vector<std::string>{"complete"});
    CHECK_FALSE(d.finished_clean);
    CHECK(parse("data: a\n\n: trailing comment\n").finished_clean);
}

TEST_CASE("sse: lines and events over the size limit fail cleanly and stay failed") {
    std::string big(100, 'x');
    auto c = parse_split("data: " + big + "\n\n", {}, 64);
    CHECK_FALSE(c.ok);
    CHECK(c.events.empty());
    // Many small data lines add up to one big event.
    std::string many;
    for (int i = 0; i < 20; ++i) many += "data: 0123456789\n";
    auto d = parse_split(many + "\n", {}, 64);
    CHECK_FALSE(d.ok);
    CHECK(d.events.empty());
    SseParser p([](const SseEvent&) {}, 8);
    CHECK_FALSE(p.feed("data: 0123456789\n"));
    CHECK_FALSE(p.error().empty());
    CHECK_FALSE(p.feed("data: a\n\n"));  // stays failed
}

TEST_CASE("sse: every split into two or three chunks, and byte by byte, gives the same events") {
    const std::string s =
        ": hi\r\nevent: e\r\ndata: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\r\n\r\n"
        "data: line1\rdata: line2\r\rdata: \xC3\xA9t\xC3\xA9\n\ndata: [DONE]\n\n";
    const auto want = parse(s);
    REQUIRE(want.events.size() == 4);
    CHECK(want.events[2].data == "\xC3\xA9t\xC3\xA9");
    for (size_t a = 1; a < s.size(); ++a) {
        auto c = parse_split(s, {a});
        REQUIRE(datas(c) == datas(want));
        for (size_t b = a + 1; b < s.size(); b += 3) REQUIRE(datas(parse_split(s, {a, b})) == datas(want));
    }
    std::vector<size_t> every;
    for (size_t i = 1; i < s.size(); ++i) every.push_back(i);
    auto c = parse_split(s, every);
    CHECK(datas(c) == datas(want));
    CHECK(c.events[0].type == "e");
    CHECK(c.finished_clean);
}

TEST_CASE("sse: random chunkings of a long stream") {
    std::string s;
    std::vector<std::string> want;
    for (int i = 0; i < 200; ++i) {
        std::string d = "{\"i\":" + std::to_string(i) + "}";
        const char* eol = i % 3 == 0 ? "\r\n" : i % 3 == 1 ? "\n" : "\r";
        s += std::string("data: ") + d + eol + (i % 7 == 0 ? std::string(": c") + eol : "") + eol;
        want.push_back(d);
    }
    std::mt19937 rng(42);
    for (int trial = 0; trial < 50; ++trial) {
        std::vector<size_t> cuts;
        for (size_t at = 1 + rng() % 40; at < s.size(); at += 1 + rng() % 40) cuts.push_back(at);
        REQUIRE(datas(parse_split(s, cuts)) == want);
    }
}
