// tandem-cloud's HTTP side (Boost.Beast, one I/O thread): routing, bearer auth (a token names
// a tenant, tenants.h), body limits, the change feed with long poll, fault injection and
// graceful shutdown. The wire format is docs/protocol.md; in short:
//
//   GET    /health                            200 {status, docs, passages}; with a valid token
//                                             also the caller's {tenant, epoch, feed_head, pending}
//   POST   /v1/memory/requests                202 {request_id, status: accepted|duplicate}
//                                             body {request_id, context, max_items?, document?};
//                                             409 when the request_id was used with another
//                                             context; 429 when too many are pending
//   GET    /v1/memory/requests/ID             200 {request_id, document, state, error}
//   GET    /v1/memory/changes?since=C&limit=N&wait=S
//                                             200 {items, next_cursor, epoch, reset}; items are
//                                             {id, request_id, document, text, source{doc_id,
//                                              title}, created_at, method} or tombstones
//                                             {id, deleted: true}; cursors are opaque
//                                             (feed_cursor.h); reset: C was from another epoch
//   DELETE /v1/memory/items/ID                200 {id, deleted: true}: appends a tombstone
//   DELETE /v1/memory/documents/DOC           200 {scope, document, deleted: n}: a document's notes
//   DELETE /v1/memory/items                   200 {scope, deleted: n}: all the tenant's notes
//   GET    /v1/sources/DOC_ID?note=TEXT        200 {doc_id, title, passage, index, count}: the
//                                             corpus passage a note came from; 404 unknown doc
//   POST   /v1/chat/completions               OpenAI-compatible (openai_api.h), plain or SSE;
//                                             501 when started without --model
//   GET    /v1/models[/ID]                    the served model (none without --model)
//   GET|POST|DELETE /admin/faults             only with --enable-admin (faults.h)
//
// Every memory route acts on the caller's tenant only. Errors are OpenAI's shape:
// {"error": {"message", "type", "param", "code"}} with 400, 401, 404, 405, 409, 413, 429, 500.
//
// Connections (examples/common/accept_loop.h): at most max_connections open, below the
// open-file limit; at the cap the connection idle longest is closed for a new client; accept
// errors (EMFILE, ...) back off and are logged once per 10 s. A kept-alive connection waits
// idle_timeout_s for its next request, a request head must arrive header_timeout_s after its
// first byte. The bearer token is checked on the request head, before any body byte is read
// (401, then the connection closes). A body reserves its Content-Length (max_body when chunked)
// from max_body_total until its response is sent; a request that would pass that total gets
// 503 with Retry-After: 1. A long poll that times out leaves nothing behind.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "faults.h"
#include "tandem/cloud/generator.h"
#include "tandem/cloud/tenants.h"

namespace tandem::cloud {

class ChatBackend;

struct ServerConfig {
    std::string host = "127.0.0.1";
    uint16_t port = 0;               // 0: any free port
    std::string db_path;             // a --db value: SQLite file or postgresql:// URI
    int64_t lease_ms = 30000;        // memory worker's lease on a claimed request (worker.h)
    TenantDirectory tenants = TenantDirectory::open();  // token -> tenant; open() = no auth
    int64_t max_pending = 100;       // memory requests pending per tenant (429 beyond)
    size_t max_body = 1 << 20;       // request body limit (413 beyond)
    // Connection limits (see "Connections" above):
    size_t max_connections = 4096;   // also kept below the open-file limit
    size_t max_body_total = 64 << 20;  // request bodies being read or held, all connections (503 beyond)
    int idle_timeout_s = 60;         // a kept-alive connection waiting for its next request
    int header_timeout_s = 10;       // a request head, from its first byte
    int body_timeout_s = 60;         // a request body
    double max_wait_s = 30;          // cap on ?wait=
    bool enable_admin = false;       // /admin/faults
    std::string faults;              // --faults spec queued at start
};

class CloudServer {
public:
    // chat: the model behind /v1/chat/completions (nullptr: 501).
    CloudServer(ServerConfig cfg, std::unique_ptr<MemoryGenerator> gen, std::shared_ptr<ChatBackend> chat = nullptr);
    ~CloudServer();
    // Binds and listens; returns the bound port. Throws std::runtime_error on failure.
    uint16_t listen();
    // Serves until SIGINT or SIGTERM, then stops accepting, answers waiting long polls, lets
    // requests in flight finish (up to 3 s) and returns.
    void run();

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::cloud
