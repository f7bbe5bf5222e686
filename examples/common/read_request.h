// Reading a request head with the two timeouts the example servers use (tandem-cloud,
// tandem-compose):
//   idle    waiting for the request's first bytes (a kept-alive connection between requests);
//           meanwhile the connection is idle in the accept loop (accept_loop.h) and may be
//           closed to make room for a new client;
//   header  from the first byte to the end of the head (a client trickling its head is cut).
// A head that arrives in one piece (the usual case) is parsed from the first read, without a
// second operation.
#pragma once
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>

#include "accept_loop.h"

namespace tandem::examples {

struct HeadTimeouts {
    std::chrono::milliseconds idle, header;
};

// Reads the next request head into `parser` (fresh, limits set) and calls done(ec) on the
// stream's executor: ec is empty when the head is complete (the body may follow in `buffer`).
// `idle` is the connection's flag that its closer checks (true while waiting for first bytes).
// `done` must keep the connection (and so stream, buffer, parser, slot, idle) alive.
template <class Parser, class Done>
void async_read_request_head(boost::beast::tcp_stream& stream, boost::beast::flat_buffer& buffer, Parser& parser,
                             AcceptLoop::Slot& slot, bool& idle, HeadTimeouts timeouts, Done done) {
    namespace http = boost::beast::http;
    auto rest_of_head = [&stream, &buffer, &parser, timeouts, done]() {
        boost::beast::error_code ec;
        buffer.consume(parser.put(buffer.data(), ec));
        if (ec != http::error::need_more) return done(ec);  // complete, or a bad or too long head
        stream.expires_after(timeouts.header);
        http::async_read_header(stream, buffer, parser, [done](boost::beast::error_code e, size_t) { done(e); });
    };
    if (buffer.size() > 0) return rest_of_head();  // the client sent it already (pipelining)
    idle = true;
    slot.set_idle();
    stream.expires_after(timeouts.idle);
    stream.async_read_some(buffer.prepare(512), [&buffer, &slot, &idle, rest_of_head, done](boost::beast::error_code ec, size_t n) {
        idle = false;
        slot.set_busy();
        if (ec) return done(ec);
        buffer.commit(n);
        rest_of_head();
    });
}

}  // namespace tandem::examples
