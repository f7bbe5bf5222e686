// Change notifications between tandem-cloud processes that share one database. Replicas on one
// PostgreSQL learn through it that another replica appended to a tenant's feed (so their long
// polls answer at once) or queued a memory request (so an idle worker claims it at once), with
// no polling loop: the PostgreSQL source is LISTEN/NOTIFY (pg_listener.cpp).
//
//   channel        payload     sent by (in the writing transaction, delivered at commit)
//   tandem_feed    tenant      complete_request, forget_* : the tenant's feed grew
//   tandem_jobs    ""          add_request: a memory request is waiting
//
// A notification can be lost while the listening connection is down; after it reconnects the
// source reports every tenant as changed ("") and a job as waiting, so that nothing waits for a
// notification that never comes. SQLite has no such source (one process; the worker wakes the
// server's waiters itself): open_feed_events returns nullptr for it.
#pragma once
#include <functional>
#include <memory>
#include <string>

namespace tandem::cloud {

class FeedEvents {
public:
    using FeedFn = std::function<void(const std::string& tenant)>;  // "" = any tenant may have changed
    using JobsFn = std::function<void()>;
    virtual ~FeedEvents() = default;  // stops delivering, joins its thread
    // Starts delivering on the source's own thread; the callbacks must not block for long.
    virtual void start(FeedFn on_feed, JobsFn on_jobs) = 0;
};

// The notification source of a --db value: LISTEN on PostgreSQL, nullptr for SQLite.
std::unique_ptr<FeedEvents> open_feed_events(const std::string& db);

}  // namespace tandem::cloud
