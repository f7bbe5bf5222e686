// HttpLoad: many keep-alive HTTP/1.1 clients on one thread (Boost.Beast, asynchronous), for
// the chaos tests and the load bench (bench/bench-cloud-load.cpp). Each client has its own
// connection and sends its group's requests back to back until the run ends; a response with
// "Connection: close" or a failed exchange makes it reconnect. Loopback only.
//
//   HttpLoad load(port);
//   auto& g = load.group("pollers", 200, [](HttpLoad::Client& c) { return "/v1/...?since=" + c.cursor; });
//   load.run(std::chrono::seconds(60));   // g.stats: responses by status, errors, latencies
#pragma once
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace tandem_test {

class HttpLoad {
public:
    using Clock = std::chrono::steady_clock;
    struct Stats {
        uint64_t responses = 0;
        std::map<int, uint64_t> by_status;
        uint64_t errors = 0;                  // connect/write/read failures, timeouts
        std::deque<std::string> error_samples;  // the first few, for messages
        std::vector<double> latency_ms;       // one per response
        uint64_t connects = 0;
    };
    struct Client;
    struct Group {
        std::string name;
        std::function<std::string(Client&)> target;                         // the next request's target
        std::function<void(Client&, int status, const std::string&)> on_response;  // may be empty
        Stats stats;
    };
    struct Client : std::enable_shared_from_this<Client> {
        Client(HttpLoad& l, Group& gr, int i) : load(l), group(gr), index(i), stream(l.ioc_) {}
        HttpLoad& load;
        Group& group;
        int index;
        std::string cursor;  // free for the group's target/on_response (e.g. a feed cursor)
        boost::beast::tcp_stream stream;
        boost::beast::flat_buffer buf;
        boost::beast::http::request<boost::beast::http::empty_body> req;
        boost::beast::http::response<boost::beast::http::string_body> res;
        Clock::time_point sent;
        bool connected = false;

        void next() {
            if (Clock::now() >= load.end_) return close();
            if (!connected) return connect();
            req = {};
            req.method(boost::beast::http::verb::get);
            req.target(group.target(*this));
            req.version(11);
            req.set(boost::beast::http::field::host, "127.0.0.1");
            if (!load.token_.empty()) req.set(boost::beast::http::field::authorization, "Bearer " + load.token_);
            req.keep_alive(true);
            res = {};
            sent = Clock::now();
            stream.expires_after(load.request_timeout_);
            boost::beast::http::async_write(stream, req, [self = shared_from_this()](boost::beast::error_code ec, size_t) {
                if (ec) return self->fail("write", ec);
                boost::beast::http::async_read(self->stream, self->buf, self->res,
                                               [self](boost::beast::error_code e, size_t) { self->on_read(e); });
            });
        }
        void connect() {
            stream.expires_after(load.request_timeout_);
            stream.async_connect(load.endpoint_, [self = shared_from_this()](boost::beast::error_code ec) {
                if (ec) return self->fail("connect", ec);
                self->connected = true;
                self->group.stats.connects++;
                self->next();
            });
        }
        void on_read(boost::beast::error_code ec) {
            if (ec) return fail("read", ec);
            Stats& st = group.stats;
            st.responses++;
            st.by_status[(int)res.result_int()]++;
            st.latency_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - sent).count());
            if (group.on_response) group.on_response(*this, (int)res.result_int(), res.body());
            if (!res.keep_alive()) reset();
            next();
        }
        void fail(const char* what, boost::beast::error_code ec) {
            if (Clock::now() >= load.end_) return close();  // the run's end cut it: not an error
            Stats& st = group.stats;
            st.errors++;
            if (st.error_samples.size() < 5) st.error_samples.push_back(std::string(what) + ": " + ec.message());
            reset();
            auto t = std::make_shared<boost::asio::steady_timer>(load.ioc_, std::chrono::milliseconds(50));
            t->async_wait([self = shared_from_this(), t](boost::beast::error_code) { self->next(); });
        }
        void reset() {
            boost::beast::error_code ig;
            stream.socket().close(ig);  // async_connect opens it again
            buf.clear();
            connected = false;
        }
        void close() {
            boost::beast::error_code ig;
            stream.socket().close(ig);
        }
    };

    explicit HttpLoad(int port, std::string token = "")
        : endpoint_(boost::asio::ip::make_address("127.0.0.1"), (unsigned short)port), token_(std::move(token)) {}

    // A group of `clients` connections; groups must all be added before run().
    Group& group(std::string name, int clients, std::function<std::string(Client&)> target,
                 std::function<void(Client&, int, const std::string&)> on_response = nullptr) {
        groups_.push_back(std::make_unique<Group>());
        Group& g = *groups_.back();
        g.name = std::move(name);
        g.target = std::move(target);
        g.on_response = std::move(on_response);
        for (int i = 0; i < clients; i++) clients_.push_back(std::make_shared<Client>(*this, g, i));
        return g;
    }

    // Every response must come within this (long polls included); default 40 s.
    void set_request_timeout(std::chrono::seconds t) { request_timeout_ = t; }

    // Runs every client for `duration` on this thread. `tick`, when given, is called about
    // every second (e.g. to sample the server's memory).
    void run(std::chrono::milliseconds duration, std::function<void(double seconds)> tick = nullptr) {
        const auto start = Clock::now();
        end_ = start + duration;
        for (auto& c : clients_) c->next();
        boost::asio::steady_timer timer(ioc_);
        std::function<void(boost::beast::error_code)> on_tick = [&](boost::beast::error_code) {
            if (tick) tick(std::chrono::duration<double>(Clock::now() - start).count());
            if (Clock::now() >= end_) {
                for (auto& c : clients_) c->close();  // long polls still waiting end now
                return;
            }
            timer.expires_after(std::chrono::seconds(1));
            timer.async_wait(on_tick);
        };
        timer.expires_after(std::chrono::seconds(1));
        timer.async_wait(on_tick);
        ioc_.run();
    }

private:
    boost::asio::io_context ioc_{1};
    boost::asio::ip::tcp::endpoint endpoint_;
    std::string token_;
    std::chrono::seconds request_timeout_{40};
    Clock::time_point end_;
    std::vector<std::unique_ptr<Group>> groups_;
    std::vector<std::shared_ptr<Client>> clients_;
};

}  // namespace tandem_test
