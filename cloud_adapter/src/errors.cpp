// The cloud_adapter error categories: cloud_errc, libcurl's CURLcode, and the cloud_cond classes.
#include <curl/curl.h>

#include "tandem/cloud_adapter.h"

namespace tandem {

// ---- cloud_errc --------------------------------------------------------------------------

namespace {
class CloudCategory : public std::error_category {
public:
    const char* name() const noexcept override { return "tandem.cloud"; }
    std::string message(int v) const override {
        switch (static_cast<cloud_errc>(v)) {
            case cloud_errc::cancelled: return "cancelled";
            case cloud_errc::shut_down: return "client shut down";
            case cloud_errc::http_error: return "HTTP client error (4xx)";
            case cloud_errc::unauthorized: return "unauthorized (401/403)";
            case cloud_errc::server_error: return "server error (5xx)";
            case cloud_errc::rate_limited: return "rate limited (429)";
            case cloud_errc::response_too_large: return "response too large";
            case cloud_errc::malformed_json: return "malformed JSON";
            case cloud_errc::bad_response: return "unexpected response shape";
            case cloud_errc::stream_error: return "error object in the stream";
            case cloud_errc::stream_truncated: return "stream ended early";
            case cloud_errc::invalid_argument: return "invalid argument";
        }
        return "unknown cloud error " + std::to_string(v);
    }
};

// ---- CURLcode ----------------------------------------------------------------------------

class CurlCategory : public std::error_category {
public:
    const char* name() const noexcept override { return "libcurl"; }
    std::string message(int v) const override { return curl_easy_strerror(static_cast<CURLcode>(v)); }
};

bool is_connection_code(int v) {
    switch (static_cast<CURLcode>(v)) {
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_CONNECT:
        case CURLE_GOT_NOTHING:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_WEIRD_SERVER_REPLY:
        case CURLE_AGAIN:
            return true;
        default:
            return false;
    }
}

bool is_tls_code(int v) {
    switch (static_cast<CURLcode>(v)) {
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
            return true;
        default:
            return false;
    }
}

// ---- cloud_cond --------------------------------------------------------------------------

class CondCategory : public std::error_category {
public:
    const char* name() const noexcept override { return "tandem.cloud.cond"; }
    std::string message(int v) const override {
        switch (static_cast<cloud_cond>(v)) {
            case cloud_cond::connection: return "connection failure";
            case cloud_cond::timeout: return "timeout";
            case cloud_cond::tls: return "TLS failure";
            case cloud_cond::retryable: return "retryable failure";
            case cloud_cond::cancelled: return "cancelled";
        }
        return "unknown condition";
    }
    bool equivalent(const std::error_code& ec, int cond) const noexcept override {
        const bool curl = ec.category() == curl_category();
        const int v = ec.value();
        switch (static_cast<cloud_cond>(cond)) {
            case cloud_cond::connection: return curl && is_connection_code(v);
            case cloud_cond::timeout: return curl && v == CURLE_OPERATION_TIMEDOUT;
            case cloud_cond::tls: return curl && is_tls_code(v);
            case cloud_cond::retryable:
                if (curl) return is_connection_code(v) || v == CURLE_OPERATION_TIMEDOUT;
                return ec == cloud_errc::server_error || ec == cloud_errc::rate_limited;
            case cloud_cond::cancelled:
                return ec == cloud_errc::cancelled || ec == cloud_errc::shut_down;
        }
        return false;
    }
};
}  // namespace

const std::error_category& cloud_category() {
    static const CloudCategory c;
    return c;
}
std::error_code make_error_code(cloud_errc e) { return {static_cast<int>(e), cloud_category()}; }

const std::error_category& curl_category() {
    static const CurlCategory c;
    return c;
}
std::error_code make_curl_error(int curl_code) { return {curl_code, curl_category()}; }

const std::error_category& cloud_cond_category() {
    static const CondCategory c;
    return c;
}
std::error_condition make_error_condition(cloud_cond c) {
    return {static_cast<int>(c), cloud_cond_category()};
}

// ---- redaction ---------------------------------------------------------------------------

std::string redact_secrets(std::string_view text, std::string_view secret) {
    std::string out;
    out.reserve(text.size());
    static constexpr std::string_view kAuth = "authorization:";
    size_t i = 0;
    while (i < text.size()) {
        // "Authorization:" (any case) at i: keep the name, replace the value up to the line end.
        if (text.size() - i >= kAuth.size()) {
            bool match = true;
            for (size_t k = 0; k < kAuth.size() && match; ++k) {
                char ch = text[i + k];
                if (ch >= 'A' && ch <= 'Z') ch = char(ch - 'A' + 'a');
                match = ch == kAuth[k];
            }
            if (match) {
                out.append(text.data() + i, kAuth.size());
                out += " <redacted>";
                i += kAuth.size();
                while (i < text.size() && text[i] != '\r' && text[i] != '\n') ++i;
                continue;
            }
        }
        if (!secret.empty() && text.compare(i, secret.size(), secret) == 0) {
            out += "<redacted>";
            i += secret.size();
            continue;
        }
        out.push_back(text[i++]);
    }
    return out;
}

}  // namespace tandem
