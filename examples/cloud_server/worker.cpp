// MemoryWorker: pending request -> corpus passages -> notes -> feed (one transaction).
#include "worker.h"

#include <chrono>
#include <cstdio>

#include "tandem/cloud/server_db.h"
#include "tandem/memory_store.h"  // fts5_match_query

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
    while (!stop_) {
        try {
            if (!db) db = std::make_unique<ServerDb>(db_path_);
            MemoryRequest req;
            if (db->next_pending(&req)) {
                // Three passages per wanted note: some passages yield no usable sentence.
                std::vector<Passage> passages =
                    db->search(fts5_match_query(req.context, 32), (size_t)req.max_items * 3);
                std::vector<NewNote> notes = gen_->generate(req.context, passages, (size_t)req.max_items);
                db->complete_request(req.request_id, notes);
                std::fprintf(stderr, "tandem-cloud: request %s: %zu notes from %zu passages\n",
                             req.request_id.c_str(), notes.size(), passages.size());
                if (on_notes_) on_notes_();
                continue;
            }
        } catch (const std::exception& e) {
            // A database error: report it, mark the request failed when we know which one
            // (a retry would fail the same way), and keep serving.
            std::fprintf(stderr, "tandem-cloud: worker: %s\n", e.what());
            MemoryRequest req;
            try {
                if (db && db->next_pending(&req)) db->fail_request(req.request_id, e.what());
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
