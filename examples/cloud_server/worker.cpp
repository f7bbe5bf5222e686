// MemoryWorker: claim a pending request -> corpus passages -> notes -> feed (one transaction),
// with a lease renewed by a second thread meanwhile.
#include "worker.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "tandem/cloud/random_id.h"
#include "tandem/cloud/server_db.h"
#include "upstream_llm.h"  // UpstreamError

namespace tandem::cloud {

static std::string worker_name() {
    char host[256] = {0};
    if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
    return std::string(host) + ":" + std::to_string(getpid()) + ":" + random_hex(4);
}

MemoryWorker::MemoryWorker(WorkerConfig cfg, std::unique_ptr<MemoryGenerator> gen, std::function<void()> on_notes)
    : cfg_(std::move(cfg)), name_(worker_name()), gen_(std::move(gen)), on_notes_(std::move(on_notes)) {}

MemoryWorker::~MemoryWorker() { stop(); }

void MemoryWorker::start() {
    thread_ = std::thread([this] { run(); });
    keeper_ = std::thread([this] { renew_leases(); });
}

void MemoryWorker::wake() {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
    cv_.notify_all();
}

void MemoryWorker::stop() {
    stop_ = true;
    wake();
    if (thread_.joinable()) thread_.join();
    if (keeper_.joinable()) keeper_.join();
}

void MemoryWorker::run() {
    std::unique_ptr<ServerDb> db;
    std::string last_tenant;  // round robin: the next request comes from the next tenant
    while (!stop_) {
        MemoryRequest req;
        try {
            if (!db) db = open_database(cfg_.db);
            if (db->claim_request(name_, cfg_.lease_ms, last_tenant, &req)) {
                last_tenant = req.tenant;
                {
                    std::lock_guard<std::mutex> lock(mu_);
                    job_tenant_ = req.tenant;
                    job_id_ = req.request_id;
                }
                // Three passages per wanted note: some passages yield no usable sentence.
                std::vector<Passage> passages = db->search(req.context, (size_t)req.max_items * 3);
                std::vector<NewNote> notes;
                try {
                    notes = gen_->generate(req.context, passages, (size_t)req.max_items);
                } catch (const UpstreamError& e) {
                    // The LLM server failed (the log has the details): the tenant is told why.
                    db->fail_request(req.tenant, req.request_id, name_, e.what());
                    req = {};
                }
                if (!req.request_id.empty()) {
                    if (db->complete_request(req.tenant, req.request_id, name_, notes)) {
                        std::fprintf(stderr, "tandem-cloud: request %s of tenant %s: %zu notes from %zu passages\n",
                                     req.request_id.c_str(), req.tenant.c_str(), notes.size(), passages.size());
                        if (on_notes_) on_notes_();
                    } else {
                        std::fprintf(stderr, "tandem-cloud: request %s of tenant %s: not stored (forgotten meanwhile, "
                                     "or another worker took it over after this one's lease ran out)\n",
                                     req.request_id.c_str(), req.tenant.c_str());
                    }
                }
                std::lock_guard<std::mutex> lock(mu_);
                job_tenant_.clear();
                job_id_.clear();
                continue;
            }
        } catch (const std::exception& e) {
            // A database error: report it, mark the request failed when we know which one
            // (a retry would fail the same way), and keep serving.
            std::fprintf(stderr, "tandem-cloud: worker: %s\n", e.what());
            try {
                if (db && !req.request_id.empty())
                    db->fail_request(req.tenant, req.request_id, name_, "the server failed to process it");
            } catch (const std::exception&) {
                db.reset();  // reopen on the next round
            }
            std::lock_guard<std::mutex> lock(mu_);
            job_tenant_.clear();
            job_id_.clear();
        }
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(cfg_.poll_ms), [this] { return woken_ || stop_.load(); });
        woken_ = false;
    }
}

// Renews the lease of the request being produced every lease/3, on a connection of its own
// (the worker's is not used while it generates).
void MemoryWorker::renew_leases() {
    std::unique_ptr<ServerDb> db;
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
        cv_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(1, cfg_.lease_ms / 3)));
        if (stop_ || job_id_.empty()) continue;
        const std::string tenant = job_tenant_, id = job_id_;
        lock.unlock();
        try {
            if (!db) db = open_database(cfg_.db);
            if (!db->renew_lease(tenant, id, name_, cfg_.lease_ms)) {
                std::lock_guard<std::mutex> still(mu_);  // not just finished meanwhile
                if (job_id_ == id && job_tenant_ == tenant)
                    std::fprintf(stderr, "tandem-cloud: request %s of tenant %s: lease lost\n", id.c_str(), tenant.c_str());
            }
        } catch (const std::exception& e) {
            std::fprintf(stderr, "tandem-cloud: lease renewal: %s\n", e.what());
            db.reset();
        }
        lock.lock();
    }
}

}  // namespace tandem::cloud
