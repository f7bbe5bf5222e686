// tandem-cloud's HTTP side (Boost.Beast, one I/O thread): routing, bearer auth, body limits,
// the change feed with long poll, fault injection and graceful shutdown. The wire format is
// docs/protocol.md; in short:
//
//   GET    /health                            200 {status, docs, passages, feed_head, pending}
//   POST   /v1/memory/requests                202 {request_id, status: accepted|duplicate}
//                                             body {request_id, context, max_items?}; 409 when
//                                             the request_id was used with another context
//   GET    /v1/memory/requests/ID             200 {request_id, state, error}
//   GET    /v1/memory/changes?since=C&limit=N&wait=S
//                                             200 {items, next_cursor}; items are
//                                             {id, request_id, text, source{doc_id,title},
//                                              created_at, method} or tombstones
//                                             {id, deleted: true}; C and next_cursor are
//                                             decimal strings (feed sequence numbers)
//   DELETE /v1/memory/items/ID                200 {id, deleted: true, seq}: appends a tombstone
//   GET    /v1/sources/DOC_ID?note=TEXT        200 {doc_id, title, passage, index, count}: the
//                                             corpus passage a note came from; 404 unknown doc
//   POST   /v1/chat/completions               OpenAI-compatible, plain or SSE (stream: true);
//                                             501 when started without --model
//   GET|POST|DELETE /admin/faults             only with --enable-admin (faults.h)
//
// Errors are {"error": {"message", "type", "code"}} with 400, 401, 404, 405, 409, 413, 500.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "faults.h"
#include "tandem/cloud/generator.h"

namespace tandem::cloud {

class ChatWorker;

struct ServerConfig {
    std::string host = "127.0.0.1";
    uint16_t port = 0;               // 0: any free port
    std::string db_path;
    std::string token;               // "" = no auth
    size_t max_body = 1 << 20;       // request body limit (413 beyond)
    double max_wait_s = 30;          // cap on ?wait=
    bool enable_admin = false;       // /admin/faults
    std::string faults;              // --faults spec queued at start
};

class CloudServer {
public:
    // chat: the model behind /v1/chat/completions (nullptr: 501).
    CloudServer(ServerConfig cfg, std::unique_ptr<MemoryGenerator> gen, std::shared_ptr<ChatWorker> chat = nullptr);
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
