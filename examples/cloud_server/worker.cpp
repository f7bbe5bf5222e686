// MemoryWorker: pending request -> corpus passages -> notes -> feed (one transaction).
#include "worker.h"

#include <chrono>
#include <cstdio>

#include "server_db.h"

namespace tandem::cloud {

MemoryWorker::MemoryWorker(std::string db_path, std::unique_ptr<MemoryGenerator> gen,
                           std::function<void()> on_notes)
    : db_path_(std::move(db_path)), gen_(std::move(gen)), on_notes_(std::move(on_notes)) {}

MemoryWorker::~MemoryWorker() { stop(); }

void MemoryWorker::start() { thread_ = std::thread([this] { run(); }); }

void MemoryWorker::wake() {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
    cv_.notify_one();
}

void MemoryWorker::stop() {
    stop_ = true;
    wake();
    if (thread_.joinable()) thread_.join();
}

void MemoryWorker::run() {
    std::unique_ptr<ServerDb> db;
    std::string last_tenant;  // round robin: the next request comes from the next tenant
    while (!stop_) {
        MemoryRequest req;
        try {
            if (!db) db = open_server_db(db_path_);
            if (db->next_pending(last_tenant, &req)) {
                last_tenant = req.tenant;
                // Three passages per wanted note: some passages yield no usable sentence.
                std::vector<Passage> passages = db->search(req.context, (size_t)req.max_items * 3);
                std::vector<NewNote> notes = gen_->generate(req.context, passages, (size_t)req.max_items);
                if (db->complete_request(req.tenant, req.request_id, notes)) {
                    std::fprintf(stderr, "tandem-cloud: request %s of tenant %s: %zu notes from %zu passages\n", req.request_id.c_str(),
                                 req.tenant.c_str(), notes.size(), passages.size());
                    if (on_notes_) on_notes_();
                }
                continue;
            }
        } catch (const std::exception& e) {
            // A database error: report it, mark the request failed when we know which one
            // (a retry would fail the same way), and keep serving.
            std::fprintf(stderr, "tandem-cloud: worker: %s\n", e.what());
            try {
                if (db && !req.request_id.empty()) db->fail_request(req.tenant, req.request_id, "the server failed to process it");
            } catch (const std::exception&) {
                db.reset();  // reopen on the next round
            }
        }
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::seconds(1), [this] { return woken_ || stop_.load(); });
        woken_ = false;
    }
}

}  // namespace tandem::cloud
