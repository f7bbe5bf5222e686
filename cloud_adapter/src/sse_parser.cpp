// SseParser: see tandem/sse_parser.h for the format and the contract.
#include "tandem/sse_parser.h"

namespace tandem {

SseParser::SseParser(std::function<void(const SseEvent&)> on_event, size_t max_event_bytes)
    : on_event_(std::move(on_event)), max_bytes_(max_event_bytes) {}

// ---- bytes -> lines ----------------------------------------------------------------------

bool SseParser::feed(std::string_view bytes) {
    if (failed_) return false;
    size_t i = 0;
    while (i < bytes.size()) {
        if (after_cr_) {  // CRLF split across chunks (or not): the LF is part of the ending
            after_cr_ = false;
            if (bytes[i] == '\n') {
                ++i;
                continue;
            }
        }
        // The longest run without a line ending goes to line_ at once.
        size_t j = i;
        while (j < bytes.size() && bytes[j] != '\n' && bytes[j] != '\r') ++j;
        line_.append(bytes.data() + i, j - i);
        if (line_.size() + pending_.data.size() > max_bytes_) {
            failed_ = true;
            error_ = "SSE line/event longer than " + std::to_string(max_bytes_) + " bytes";
            return false;
        }
        if (j == bytes.size()) break;
        after_cr_ = bytes[j] == '\r';
        i = j + 1;
        on_line(line_);
        line_.clear();
        if (failed_) return false;
    }
    return true;
}

bool SseParser::finish() {
    if (failed_) return false;
    // A last line without its ending is incomplete by definition; so is an event that never
    // saw its terminating empty line. Neither is dispatched.
    return line_.empty() && !has_fields_;
}

// ---- lines -> events ---------------------------------------------------------------------

void SseParser::on_line(std::string_view line) {
    if (at_start_) {
        at_start_ = false;
        if (line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);
    }
    if (line.empty()) return dispatch();
    if (line[0] == ':') return;  // comment
    std::string_view field = line, value;
    size_t colon = line.find(':');
    if (colon != std::string_view::npos) {
        field = line.substr(0, colon);
        value = line.substr(colon + 1);
        if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
    }
    has_fields_ = true;
    if (field == "data") {
        pending_.data.append(value.data(), value.size());
        pending_.data.push_back('\n');
        has_data_ = true;
    } else if (field == "event") {
        pending_.type.assign(value.data(), value.size());
    } else if (field == "id") {
        if (value.find('\0') == std::string_view::npos) pending_.id.assign(value.data(), value.size());
    }
    // "retry" and unknown fields: ignored, as the standard says.
}

void SseParser::dispatch() {
    has_fields_ = false;
    if (!has_data_) {  // an event without data is dropped (its type/id are reset too)
        pending_ = SseEvent{};
        return;
    }
    pending_.data.pop_back();  // the "\n" after the last data line
    SseEvent ev = std::move(pending_);
    pending_ = SseEvent{};
    has_data_ = false;
    ++n_events_;
    on_event_(ev);
}

}  // namespace tandem
