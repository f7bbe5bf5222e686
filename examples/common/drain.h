// Lingering close for the example HTTP servers: after an early answer (413, 401, 403, 503)
// the client may still be sending its body; closing at once could make the kernel reset the
// connection before the client reads the answer. drain_then_close() stops sending, reads and
// discards what still comes (at most kDrainBytes, for at most kDrainTime), then closes.
#pragma once
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <chrono>
#include <memory>
#include <vector>

namespace tandem::examples {

constexpr size_t kDrainBytes = 16u << 20;
constexpr std::chrono::seconds kDrainTime{5};

namespace detail {
struct DrainState {
    std::vector<char> buf = std::vector<char>(64 * 1024);
    size_t total = 0;
};

// `keep` (a shared_ptr to the connection) keeps the stream alive until the drain ends.
template <class Keep>
void drain_some(boost::beast::tcp_stream& stream, Keep keep, std::shared_ptr<DrainState> st) {
    stream.async_read_some(boost::asio::buffer(st->buf), [&stream, keep, st](boost::beast::error_code ec, size_t n) {
        st->total += n;
        if (ec || st->total >= kDrainBytes) {
            boost::beast::error_code ignored;
            stream.socket().close(ignored);
            return;
        }
        drain_some(stream, keep, st);
    });
}
}  // namespace detail

template <class Keep>
void drain_then_close(boost::beast::tcp_stream& stream, Keep keep) {
    boost::beast::error_code ec;
    stream.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_send, ec);
    stream.expires_after(kDrainTime);  // one deadline for the whole drain
    detail::drain_some(stream, std::move(keep), std::make_shared<detail::DrainState>());
}

}  // namespace tandem::examples
