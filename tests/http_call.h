// One plain HTTP call with libcurl's easy interface, for tests that check a server from the
// outside (not the client code under test): method, URL, optional JSON body and bearer token.
#pragma once
#include <curl/curl.h>

#include <string>

namespace tandem_test {

struct HttpReply {
    long status = 0;  // 0: no answer (connection failed or timed out)
    std::string body;
    double seconds = 0;  // the whole call
};

inline HttpReply http_call(const std::string& method, const std::string& url, const std::string& body = "",
                           const std::string& token = "", long timeout_ms = 30000) {
    HttpReply r;
    CURL* e = curl_easy_init();
    if (!e) return r;
    curl_slist* h = curl_slist_append(nullptr, "Content-Type: application/json");
    if (!token.empty()) h = curl_slist_append(h, ("Authorization: Bearer " + token).c_str());
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    if (!body.empty()) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.c_str());
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)body.size());
    }
    auto collect = +[](char* p, size_t s, size_t n, void* ud) {
        static_cast<std::string*>(ud)->append(p, s * n);
        return s * n;
    };
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    if (curl_easy_perform(e) == CURLE_OK) curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_getinfo(e, CURLINFO_TOTAL_TIME, &r.seconds);
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    return r;
}

}  // namespace tandem_test
