// Fault injection for client tests: per-path FIFO queues of faults. Each request to a path
// takes the next fault queued for that path (or for "*" when the path has none) and suffers
// it once. Deterministic: nothing random, nothing time-based except `delay`.
//
//   token        effect                                                   request processed?
//   reset        close the connection without any response                no
//   500, 503...  answer that status with a JSON error (status:CODE too)   no
//   429:S        answer 429 with Retry-After: S (seconds)                 no
//   delay:MS     wait MS milliseconds, then answer normally               yes
//   drop         send the headers and half the body, then close           yes
//   truncate     a complete HTTP message whose JSON body is cut in half   yes
//   badjson      200 with a body that is not JSON                         yes
//
// A token may end in *N to queue it N times: "500*3". Spec for --faults:
//   PATH=TOKEN[,TOKEN...][;PATH=...]     e.g. "/v1/memory/changes=500*2,delay:300;*=reset"
#pragma once
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace tandem::cloud {

enum class FaultMode { reset, status, too_many, delay, drop, truncate, bad_json };

struct Fault {
    FaultMode mode = FaultMode::status;
    int status = 500;         // status
    int retry_after_s = 1;    // too_many
    int delay_ms = 0;         // delay
    std::string token;        // as written, for listings
};

class FaultSpecError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Parses one token (with an optional *N) into N faults. Throws FaultSpecError.
std::vector<Fault> parse_fault_token(const std::string& token);

// Thread-safe queues.
class FaultQueues {
public:
    void push(const std::string& path, const Fault& f);
    // Parses and queues a whole --faults spec. Throws FaultSpecError.
    void push_spec(const std::string& spec);
    std::optional<Fault> pop(const std::string& path);
    void clear();
    std::map<std::string, std::vector<std::string>> list();  // path -> tokens

private:
    std::mutex mu_;
    std::map<std::string, std::deque<Fault>> queues_;
};

}  // namespace tandem::cloud
