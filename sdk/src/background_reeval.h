// Background re-evaluation of new memory notes (AssistantConfig::background_reeval). Internal
// to the SDK.
//
// New notes sit at the head of the suggestion's prompt, so they invalidate the whole KV
// cache. When notes are stale and the writer has been idle for background_idle_ms, a thread
// retrieves the notes for the last keystroke's window and, if they differ from those in use,
// evaluates the prompt they make on the spare context (local_engines.h) in chunks of ~15 ms of
// work at first, growing while the writer stays idle (chunk_schedule.h).
// interrupt() (every suggest/ask/cancel) stops it before the next chunk; the next idle moment
// resumes from what the spare's KV cache holds. When the whole prompt is evaluated, a
// MemoryApplied event fires and the next suggest() swaps the contexts (take_result()): its own
// prompt differs only in the keystrokes typed since.
//
// Locks: the Assistant's foreground lock (held by suggest() and ask()'s local work) comes
// before the spare's mutex. The thread takes the foreground lock only to read the last
// keystroke's text (so it never starts beside a running suggestion, and a keystroke that came
// meanwhile cancels the attempt), then holds the spare's mutex while it evaluates. Every method
// may be called from any thread unless it says otherwise.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "events.h"
#include "local_engines.h"
#include "memory_notes.h"
#include "suggest_planner.h"
#include "usage_meter.h"

namespace tandem {

class BackgroundReeval {
public:
    // Starts the thread. Every part must outlive this object; engines must have a spare.
    // `foreground` is the Assistant's foreground lock.
    BackgroundReeval(std::mutex& foreground, LocalEngines& engines, MemoryNotes& memory, const SuggestPlanner& planner,
                     UsageMeter& usage, Emit emit, int idle_ms);
    ~BackgroundReeval();  // stops the evaluation and joins the thread

    // A suggest/ask/cancel started: the running evaluation stops before its next chunk.
    void interrupt() { activity_gen_++; }
    // The writer is active now: the background waits for the idle time from here.
    void touch();
    // The notes may have changed: evaluate them at the next idle moment.
    void notes_changed();
    // Called by suggest() under the foreground lock: the keystroke's text before the cursor
    // (the next prompt is built for it, from the planner's window start).
    void set_document(std::string_view before) { before_.assign(before); }

    // Called by suggest() under the foreground lock: a completed evaluation becomes the
    // active context and its notes the notes in use. Never waits.
    void take_result();
    // Called by ask() under spare_mutex() after it used the spare: a completed evaluation
    // there is gone, so it is redone at the next idle moment.
    void spare_overwritten();

private:
    using Clock = std::chrono::steady_clock;
    void loop();
    bool evaluate_once();
    bool quiet_for_idle_time();  // no suggest/ask since idle_ (takes mu_)

    std::mutex& foreground_;
    LocalEngines& engines_;
    MemoryNotes& memory_;
    const SuggestPlanner& planner_;
    UsageMeter& usage_;
    Emit emit_;
    const std::chrono::milliseconds idle_;

    std::mutex mu_;  // guards the three members below
    std::condition_variable cv_;
    bool pending_ = false, stop_ = false;
    Clock::time_point last_activity_ = Clock::now();
    std::string before_;  // the last suggest()'s text before the cursor; guarded by foreground_
    std::atomic<uint64_t> activity_gen_{0};  // bumped by interrupt(): stops the evaluation
    std::atomic<bool> ready_{false};         // the spare holds the prompt for ready_notes_
    std::vector<MemoryItem> ready_notes_;    // guarded by the spare's mutex
    std::thread thread_;
};

}  // namespace tandem
