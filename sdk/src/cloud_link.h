// The cloud the Assistant talks to now: its URL, the client for the memory service and cloud
// asks, and the client of a separate chat endpoint (AssistantConfig::cloud_chat_url, fixed).
// Assistant::set_cloud replaces the current client at run time (a cloud that moved). Internal
// to the SDK.
//
// Users take a snapshot (current(), chat()) and keep it for one call: a replaced client lives
// until its last snapshot is dropped, so an ask() that started on the old cloud finishes there.
// Online/Offline events come only from the current client: a replaced one's late "offline"
// would contradict the new cloud's "online".
//
// Thread safety: every method may be called from any thread; set() by one thread at a time
// (the Assistant serializes set_cloud). No client is destroyed with mu_ held (a client's
// destructor joins its loop thread, which runs the connectivity callback).
#pragma once
#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "events.h"
#include "tandem/assistant.h"
#include "tandem/cloud_adapter.h"

namespace tandem {

class CloudLink {
public:
    // The cloud of cfg.cloud_url (none when ""). Throws CloudConfigError for a bad cloud_url,
    // cloud_chat_url or cloud_token.
    CloudLink(const AssistantConfig& cfg, Emit emit);

    // A client for `url` with `token` (null for ""), not yet current: the caller starts what
    // uses it, then set() makes it current. Throws CloudConfigError; nothing changes then.
    std::shared_ptr<CloudClient> make(const std::string& url, const std::string& token) const;
    // `client` (from make(url, ...)) is the cloud from now on; returns the one it replaces.
    std::shared_ptr<CloudClient> set(const std::string& url, std::shared_ptr<CloudClient> client);

    std::shared_ptr<CloudClient> current() const;  // null: no cloud
    // The client for cloud asks: the separate chat endpoint when configured, else current();
    // null when there is no cloud.
    std::shared_ptr<CloudClient> chat() const;
    std::string url() const;  // "" when there is no cloud
    bool online() const;      // there is a cloud and it is not known to be offline

private:
    static std::shared_ptr<CloudClient> client_for(CloudConfig cc);

    const bool verify_tls_;
    Emit emit_;
    std::shared_ptr<CloudClient> chat_;                // cloud_chat_url's client, or null
    std::atomic<const CloudClient*> reporting_{nullptr};  // the client whose events are reported
    mutable std::mutex mu_;                            // guards the two members below
    std::shared_ptr<CloudClient> cloud_;
    std::string url_;
};

}  // namespace tandem
