// The Assistant's memory notes (see memory_notes.h).
#include "memory_notes.h"

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

void MemoryNotes::start_sync(CloudClient& cloud, bool paused) {
    if (!store_) return;
    MemorySync::Hooks h;
    h.on_changes = [this](int64_t added, int64_t deleted) {
        mark_stale();
        try {
            if (usable()) count_ = store_->stats().n_items;
        } catch (const std::exception& e) {
            failed(e.what());
        }
        emit_(EventKind::MemoryUpdated, std::to_string(added) + " memory notes arrived, " + std::to_string(deleted) + " retracted");
    };
    h.on_error = [this](const std::string& m) { emit_(EventKind::Error, m); };
    sync_ = std::make_unique<MemorySync>(cloud, *store_, h);
    if (paused || disabled_) sync_->set_paused(true);
}

void MemoryNotes::stop_sync() { sync_.reset(); }

void MemoryNotes::set_privacy(bool on) {
    privacy_ = on;
    if (sync_) sync_->set_paused(on || disabled_);
}

// Stop using the store, say so once, keep generating. The store object stays alive (the sync
// thread holds a reference to it) and the sync is paused.
void MemoryNotes::failed(const std::string& why) {
    if (disabled_.exchange(true)) return;
    emit_(EventKind::MemoryUnavailable, "memory store failed, suggestions go on without memory: " + why);
    if (sync_) sync_->set_paused(true);
}

void MemoryNotes::mark_stale() {
    stale_ = true;
    if (on_stale_) on_stale_();
}

void MemoryNotes::note_keystroke(const DocumentWindow& window) {
    std::string id, context;
    int distance = 0;
    {
        std::lock_guard<std::mutex> lk(mu_);
        last_listing_.assign(window.listing_text());
        if (!usable() || !coordinator_.should_request(window)) return;
        id = "req-" + std::to_string(unix_ms_now()) + "-" + std::to_string(++request_seq_);
        context = window.request_context();
        distance = coordinator_.last_distance();
    }
    try {
        store_->outbox_enqueue(id, context);
    } catch (const std::exception& e) {
        failed(e.what());
        return;
    }
    mark_stale();
    emit_(EventKind::MemoryRequested, "memory request " + id + " queued (" + std::to_string(distance) + " words changed)");
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
        in_use_ = retrieve(window.retrieval_text(), limits);
        retrieved_ = true;
    }
    return in_use_;
}

std::vector<MemoryItem> MemoryNotes::retrieve(std::string_view window, const RetrieveParams& limits) {
    if (!usable()) return {};
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
    std::string window;
    {
        std::lock_guard<std::mutex> lk(mu_);
        window = last_listing_;
    }
    RetrieveParams rp;
    rp.max_items = limit;
    rp.budget = 1u << 20;
    for (const auto& m : retrieve(window, rp)) out.push_back(note_of(m));
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
