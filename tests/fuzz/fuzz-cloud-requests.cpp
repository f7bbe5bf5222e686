// libFuzzer target for what tandem-cloud parses from its clients: chat completion request
// bodies (openai_api.h) and change-feed cursors (feed_cursor.h). The first input byte picks
// one; the rest is the body or the cursor. A body either parses into parameters inside the
// documented ranges or throws ApiError (status 400, a message that names the problem); any
// other exception, crash or sanitizer report is a bug. A cursor that parses formats back to a
// cursor that parses to the same fields.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "tandem/cloud/feed_cursor.h"
#include "tandem/cloud/openai_api.h"

using namespace tandem::cloud;

static void check(bool ok) {
    if (!ok) std::abort();
}

static void fuzz_chat(const std::string& body) {
    ChatRequest r;
    try {
        r = parse_chat_request(body);
    } catch (const ApiError& e) {
        check(e.status == 400 && !e.message.empty());
        return;
    }
    const ChatParams& p = r.params;
    check(!p.messages.empty());
    for (const auto& [role, content] : p.messages) check(role == "system" || role == "user" || role == "assistant");
    check(p.max_tokens >= 1 && p.max_tokens <= 4096);
    check(p.temperature >= 0 && p.temperature <= 2);
    check(p.top_p > 0 && p.top_p <= 1);
    check(std::fabs(p.frequency_penalty) <= 2 && std::fabs(p.presence_penalty) <= 2);
    check(p.stop.size() <= 4);
    for (const std::string& s : p.stop) check(!s.empty());
}

static void fuzz_cursor(std::string_view since) {
    const auto c = parse_cursor(since);
    if (!c || c->epoch.empty()) return;
    const auto again = parse_cursor(format_cursor(c->epoch, c->seq, c->tag));
    check(again && again->epoch == c->epoch && again->seq == c->seq && again->tag == c->tag);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const std::string rest((const char*)data + 1, size - 1);
    if (data[0] % 2 == 0) fuzz_chat(rest);
    else fuzz_cursor(rest);
    return 0;
}
