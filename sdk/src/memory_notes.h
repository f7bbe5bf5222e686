// The memory side of the Assistant: the SQLite store of notes, the requests for new notes
// (MemoryCoordinator), the background sync with the cloud, and which notes the suggestion's
// prompt uses now. Internal to the SDK.
//
// A store that fails (corrupt file, disk error) disables memory: one MemoryUnavailable event,
// the sync pauses, and every method below answers as if there were no store. Suggestions go
// on without notes.
//
// Notes become stale when the sync brings changes, a new request goes out or the document
// changes; on_stale is called then (the background re-evaluation wakes up).
//
// The document (set_document): the app's stable id of the document being edited. Memory
// requests carry it, and every retrieval here prefers the notes made for it.
//
// Thread safety: every method may be called from any thread, start_sync/stop_sync by one
// thread at a time. The store serializes its own calls; mu_ guards the coordinator, the
// document, the last window and the notes in use; sync_mu_ guards the sync (the running one
// may be replaced, but is never joined with sync_mu_ held: its hooks take it).
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "events.h"
#include "memory_coordinator.h"
#include "tandem/assistant.h"
#include "tandem/cloud_adapter.h"
#include "tandem/memory_store.h"
#include "tandem/memory_sync.h"

namespace tandem {

// The public form of a stored note.
MemoryNote note_of(const MemoryItem& m);
// Whether a and b are the same notes (ids and texts) in the same order.
bool same_notes(const std::vector<MemoryItem>& a, const std::vector<MemoryItem>& b);

class MemoryNotes {
public:
    // Opens cfg.memory_db when set (a MemoryUnavailable event when it cannot be opened).
    MemoryNotes(const AssistantConfig& cfg, Emit emit, std::function<void()> on_stale);
    ~MemoryNotes();  // stops the sync first

    bool has_store() const { return store_ != nullptr; }
    // Syncs with `cloud` from now on (null: no sync): the running sync stops (its in-flight
    // call is cancelled) and its thread is joined first. The new one goes on from the stored
    // cursor (another cloud's feed starts over: MemoryReset), paused from its first pass in
    // privacy mode or when the store failed. Without a store, nothing happens.
    void start_sync(std::shared_ptr<CloudClient> cloud);
    // start_sync(nullptr): joins the sync thread; later changes are not seen. Idempotent.
    void stop_sync() { start_sync(nullptr); }
    // Privacy mode: no memory traffic while on.
    void set_privacy(bool on);
    // The app's id of the document being edited ("" = none). A change makes the notes stale.
    // Throws std::invalid_argument when it is over 256 bytes or has control characters.
    void set_document(const std::string& document_id);

    // A keystroke: remembers the window's listing text for memory_notes() and queues a memory
    // request when the coordinator says the text moved on far enough (MemoryRequested event,
    // notes stale).
    void note_keystroke(const DocumentWindow& window);

    // The notes for the suggestion's prompt. Stale notes are re-retrieved (for the window's
    // retrieval text, with `limits`) only at a sentence or paragraph end, or before the first notes:
    // new notes change the prompt's head, so the whole window is evaluated again, while
    // mid-sentence keystrokes keep the old notes and their KV cache. With `background` (the
    // background re-evaluation brings later notes), only the first call retrieves.
    std::vector<MemoryItem> notes_for_suggestion(const DocumentWindow& window, bool background, const RetrieveParams& limits);

    // For the background re-evaluation: clears the stale flag and returns whether it was set.
    bool take_stale() { return stale_.exchange(false); }
    bool stale() const { return stale_.load(); }
    bool usable() const { return store_ && !disabled_; }
    // The notes for `window` now, the document's first ({} when memory is off or failed).
    std::vector<MemoryItem> retrieve(std::string_view window, const RetrieveParams& limits);
    // Whether `notes` are the ones the prompt uses now (same ids and texts, same order).
    bool in_use(const std::vector<MemoryItem>& notes);
    // The prompt uses `notes` from now on (the background's result was swapped in).
    void use(std::vector<MemoryItem> notes);

    // The stored notes most relevant to the last keystroke's window, at most `limit`.
    std::vector<MemoryNote> memory_notes(size_t limit);
    // The router's memory-coverage signal for `query` (0 when memory is off).
    double coverage(std::string_view query);
    int64_t count() const { return count_.load(); }

private:
    void failed(const std::string& why);
    void mark_stale();
    void store_changed();  // the sync changed the store: notes stale, count refreshed
    std::vector<MemoryItem> retrieve_for(std::string_view window, RetrieveParams limits, const std::string& document);

    Emit emit_;
    std::function<void()> on_stale_;
    std::unique_ptr<MemoryStore> store_;
    std::mutex sync_mu_;                   // guards the two members below
    std::shared_ptr<CloudClient> sync_cloud_;  // the client sync_ uses: lives as long as it
    std::unique_ptr<MemorySync> sync_;
    std::atomic<bool> disabled_{false};  // the store failed: no memory from now on
    std::atomic<bool> privacy_{false};
    std::atomic<bool> stale_{true};
    std::atomic<int64_t> count_{0};
    std::mutex mu_;  // guards the members below
    MemoryCoordinator coordinator_;
    std::string document_;      // the app's document id ("" = none)
    std::string last_listing_;  // the last keystroke's DocumentWindow::listing_text()
    std::vector<MemoryItem> in_use_;
    bool retrieved_ = false;
    uint64_t request_seq_ = 0;
};

}  // namespace tandem
