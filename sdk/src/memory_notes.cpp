// The Assistant's memory notes (see memory_notes.h).
#include "memory_notes.h"

#include <stdexcept>

namespace tandem {

MemoryNote note_of(const MemoryItem& m) { return {m.id, m.text, m.doc_id, m.title}; }

bool same_notes(const std::vector<MemoryItem>& a, const std::vector<MemoryItem>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); i++)
        if (a[i].id != b[i].id || a[i].text != b[i].text) return false;
    return true;
}

MemoryNotes::MemoryNotes(const AssistantConfig& cfg, Emit emit, std::function<void()> on_stale)
    : emit_(std::move(emit)), on_stale_(std::move(on_stale)), coordinator_(cfg.memory_edit_threshold) {
    privacy_ = cfg.privacy_mode;
    if (cfg.memory_db.empty()) return;
    try {
        MemoryStoreParams mp;
        mp.path = cfg.memory_db;
        store_ = std::make_unique<MemoryStore>(mp);
        count_ = store_->stats().n_items;
    } catch (const std::exception& e) {
        store_.reset();
        emit_(EventKind::MemoryUnavailable, std::string("memory disabled, suggestions go on without it: ") + e.what());
    }
}

MemoryNotes::~MemoryNotes() { stop_sync(); }

void MemoryNotes::start_sync(std::shared_ptr<CloudClient> cloud) {
    std::unique_ptr<MemorySync> old_sync;
    std::shared_ptr<CloudClient> old_cloud;
    {
        std::lock_guard<std::mutex> lk(sync_mu_);
        old_sync = std::move(sync_);
        old_cloud = std::move(sync_cloud_);
    }
    old_sync.reset();  // stops and joins; its hooks may take sync_mu_ meanwhile
    old_cloud.reset();
    if (!store_ || !cloud) return;
    MemorySync::Hooks h;
    h.on_changes = [this](int64_t added, int64_t deleted) {
        store_changed();
        emit_(EventKind::MemoryUpdated, std::to_string(added) + " memory notes arrived, " + std::to_string(deleted) + " retracted");
    };
    h.on_reset = [this](const std::string& m) {
        store_changed();
        emit_(EventKind::MemoryReset, m);
    };
    h.on_error = [this](const std::string& m) { emit_(EventKind::Error, m); };
    std::lock_guard<std::mutex> lk(sync_mu_);
    MemorySync::Options o;
    o.start_paused = privacy_ || disabled_;  // read under sync_mu_: set_privacy/failed pause what they find there
    sync_ = std::make_unique<MemorySync>(*cloud, *store_, h, o);
    sync_cloud_ = std::move(cloud);
}

void MemoryNotes::set_privacy(bool on) {
    privacy_ = on;
    std::lock_guard<std::mutex> lk(sync_mu_);
    if (sync_) sync_->set_paused(on || disabled_);
}

void MemoryNotes::set_document(const std::string& document_id) {
    // The cloud's limit on a memory request's "document" (docs/protocol.md): checked here, so
    // that a bad id is the caller's error now and not a rejected request later.
    constexpr size_t kMaxDocumentBytes = 256;
    bool printable = true;
    for (unsigned char c : document_id) printable = printable && c >= 0x20 && c != 0x7f;
    if (document_id.size() > kMaxDocumentBytes || !printable)
        throw std::invalid_argument("document_id must be at most " + std::to_string(kMaxDocumentBytes) +
                                    " bytes without control characters");
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (document_id == document_) return;
        document_ = document_id;
    }
    mark_stale();  // the new document's notes come first
}

// Stop using the store, say so once, keep generating. The store object stays alive (the sync
// thread holds a reference to it) and the sync is paused.
void MemoryNotes::failed(const std::string& why) {
    if (disabled_.exchange(true)) return;
    emit_(EventKind::MemoryUnavailable, "memory store failed, suggestions go on without memory: " + why);
    std::lock_guard<std::mutex> lk(sync_mu_);
    if (sync_) sync_->set_paused(true);
}

void MemoryNotes::mark_stale() {
    stale_ = true;
    if (on_stale_) on_stale_();
}

void MemoryNotes::store_changed() {
    mark_stale();
    try {
        if (usable()) count_ = store_->stats().n_items;
    } catch (const std::exception& e) {
        failed(e.what());
    }
}

void MemoryNotes::note_keystroke(const DocumentWindow& window) {
    std::string id, context, document;
    int distance = 0;
    {
        std::lock_guard<std::mutex> lk(mu_);
        last_listing_.assign(window.listing_text());
        if (!usable() || !coordinator_.should_request(window)) return;
        id = "req-" + std::to_string(unix_ms_now()) + "-" + std::to_string(++request_seq_);
        context = window.request_context();
        distance = coordinator_.last_distance();
        document = document_;
    }
    try {
        store_->outbox_enqueue(id, context, document);
    } catch (const std::exception& e) {
        failed(e.what());
        return;
    }
    mark_stale();
    emit_(EventKind::MemoryRequested, "memory request " + id + " queued (" + std::to_string(distance) + " words changed)");
    std::lock_guard<std::mutex> lk(sync_mu_);
    if (sync_) sync_->wake();
}

std::vector<MemoryItem> MemoryNotes::notes_for_suggestion(const DocumentWindow& window, bool background,
                                                          const RetrieveParams& limits) {
    if (!usable()) return {};
    std::lock_guard<std::mutex> lk(mu_);
    const std::string_view before = window.before();
    const char last = before.empty() ? '\n' : before.back();
    const bool may_change =
        background ? !retrieved_ : in_use_.empty() || last == '\n' || last == '.' || last == '!' || last == '?';
    if (may_change && stale_.exchange(false)) {
        in_use_ = retrieve_for(window.retrieval_text(), limits, document_);
        retrieved_ = true;
    }
    return in_use_;
}

std::vector<MemoryItem> MemoryNotes::retrieve(std::string_view window, const RetrieveParams& limits) {
    std::string document;
    {
        std::lock_guard<std::mutex> lk(mu_);
        document = document_;
    }
    return retrieve_for(window, limits, document);
}

std::vector<MemoryItem> MemoryNotes::retrieve_for(std::string_view window, RetrieveParams limits, const std::string& document) {
    if (!usable()) return {};
    limits.prefer_document = document;
    try {
        return store_->retrieve(window, limits);
    } catch (const std::exception& e) {
        failed(e.what());
        return {};
    }
}

bool MemoryNotes::in_use(const std::vector<MemoryItem>& notes) {
    std::lock_guard<std::mutex> lk(mu_);
    return same_notes(notes, in_use_);
}

void MemoryNotes::use(std::vector<MemoryItem> notes) {
    std::lock_guard<std::mutex> lk(mu_);
    in_use_ = std::move(notes);
}

std::vector<MemoryNote> MemoryNotes::memory_notes(size_t limit) {
    std::vector<MemoryNote> out;
    if (!usable()) return out;
    std::string window, document;
    {
        std::lock_guard<std::mutex> lk(mu_);
        window = last_listing_;
        document = document_;
    }
    RetrieveParams rp;
    rp.max_items = limit;
    rp.budget = 1u << 20;
    for (const auto& m : retrieve_for(window, rp, document)) out.push_back(note_of(m));
    return out;
}

double MemoryNotes::coverage(std::string_view query) {
    if (!usable()) return 0.0;
    try {
        return store_->coverage(query);
    } catch (const std::exception& e) {
        failed(e.what());
        return 0.0;
    }
}

}  // namespace tandem
