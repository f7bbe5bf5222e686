// libFuzzer target for the cloud client's answer parsers (cloud_adapter/src/responses.h), which
// read whatever a cloud sends. The first input byte picks the parser: a chat completion, a
// change-feed page, a source passage, a forget answer (each scope), or a streamed completion
// fed to the SSE parser in pieces of 1-16 bytes (the second byte picks the size). Whatever the
// bytes, nothing may crash, throw or trip a sanitizer; a parsed page has only items with an id,
// and text only where an item is not a tombstone; a stream's result text is exactly the deltas
// it handed out, joined.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "responses.h"

using namespace tandem;

static void check(bool ok) {
    if (!ok) std::abort();
}

static void fuzz_stream(std::string_view bytes, size_t piece) {
    detail::StreamState st;
    std::string deltas;
    st.on_delta = [&](std::string_view d) { deltas.append(d.data(), d.size()); };
    st.parser = std::make_unique<SseParser>([&](const SseEvent& ev) { st.on_event(ev); }, 4096);
    for (size_t i = 0; i < bytes.size(); i += piece)
        if (!st.parser->feed(bytes.substr(i, piece))) break;
    st.parser->finish();
    check(st.result.text == deltas);
    check(st.delivered == !deltas.empty());
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    const std::string body((const char*)data + 2, size - 2);
    std::string msg;
    switch (data[0] % 7) {
    case 0: {
        ChatResult r;
        std::error_code ec = detail::parse_chat(body, r, msg);
        check(ec ? !msg.empty() : msg.empty());
        break;
    }
    case 1: {
        FeedPage p;
        if (!detail::parse_page(body, p, msg))
            for (const FeedItem& it : p.items) check(!it.id.empty() && (!it.deleted || it.text.empty()));
        break;
    }
    case 2: {
        SourcePassage s;
        (void)detail::parse_source(body, s, msg);
        break;
    }
    case 3:
    case 4:
    case 5: {
        int64_t n = -1;
        const ForgetScope scope = data[0] % 7 == 3 ? ForgetScope::item : data[0] % 7 == 4 ? ForgetScope::document : ForgetScope::all;
        if (!detail::parse_forget(body, scope, n, msg)) check(scope != ForgetScope::item || n == 1);
        break;
    }
    default:
        fuzz_stream(body, data[1] % 16 + 1);
    }
    return 0;
}
