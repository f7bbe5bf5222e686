// The Assistant's cloud (see cloud_link.h).
#include "cloud_link.h"

#include <stdexcept>
#include <utility>

namespace tandem {

CloudLink::CloudLink(const AssistantConfig& cfg, Emit emit) : verify_tls_(cfg.verify_tls), emit_(std::move(emit)) {
    if (!cfg.cloud_chat_url.empty() && cfg.cloud_chat_url != cfg.cloud_url) {
        CloudConfig chat;
        chat.base_url = cfg.cloud_chat_url;
        chat.token = cfg.cloud_token;
        chat.verify_tls = verify_tls_;
        chat.request_timeout = Millis(30000);
        chat_ = client_for(chat);
    }
    set(cfg.cloud_url, make(cfg.cloud_url, cfg.cloud_token));
}

std::shared_ptr<CloudClient> CloudLink::client_for(CloudConfig cc) {
    try {
        return std::make_shared<CloudClient>(std::move(cc));
    } catch (const std::invalid_argument& e) {
        throw CloudConfigError(e.what());
    }
}

std::shared_ptr<CloudClient> CloudLink::make(const std::string& url, const std::string& token) const {
    if (url.empty()) return nullptr;
    CloudConfig cc;
    cc.base_url = url;
    cc.token = token;
    cc.verify_tls = verify_tls_;
    cc.request_timeout = Millis(30000);
    std::shared_ptr<CloudClient> c = client_for(std::move(cc));
    const CloudClient* self = c.get();
    // Runs on the client's loop thread, which the client's destructor joins: `this` outlives it.
    c->set_connectivity_callback([this, self](const ConnectivityEvent& e) {
        if (reporting_.load() != self) return;
        if (e.state == Connectivity::online) emit_(EventKind::Online, "cloud reachable");
        if (e.state == Connectivity::offline) emit_(EventKind::Offline, "cloud unreachable: " + e.reason);
    });
    return c;
}

std::shared_ptr<CloudClient> CloudLink::set(const std::string& url, std::shared_ptr<CloudClient> client) {
    std::lock_guard<std::mutex> lk(mu_);
    reporting_ = client.get();
    url_ = client ? url : std::string();
    std::swap(cloud_, client);
    return client;
}

std::shared_ptr<CloudClient> CloudLink::current() const {
    std::lock_guard<std::mutex> lk(mu_);
    return cloud_;
}

std::shared_ptr<CloudClient> CloudLink::chat() const {
    std::lock_guard<std::mutex> lk(mu_);
    if (!cloud_) return nullptr;
    return chat_ ? chat_ : cloud_;
}

std::string CloudLink::url() const {
    std::lock_guard<std::mutex> lk(mu_);
    return url_;
}

bool CloudLink::online() const {
    const std::shared_ptr<CloudClient> c = current();
    return c && c->connectivity() != Connectivity::offline;
}

}  // namespace tandem
