// Background re-evaluation of new memory notes (see background_reeval.h).
#include "background_reeval.h"

#include <algorithm>

#include "chunk_schedule.h"

namespace tandem {

namespace {

double ms_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

BackgroundReeval::BackgroundReeval(std::mutex& foreground, LocalEngines& engines, MemoryNotes& memory,
                                   const SuggestPlanner& planner, UsageMeter& usage, Emit emit, int idle_ms)
    : foreground_(foreground),
      engines_(engines),
      memory_(memory),
      planner_(planner),
      usage_(usage),
      emit_(std::move(emit)),
      idle_(std::max(0, idle_ms)) {
    thread_ = std::thread([this] { loop(); });
}

BackgroundReeval::~BackgroundReeval() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
    }
    activity_gen_++;
    cv_.notify_all();
    thread_.join();
}

void BackgroundReeval::touch() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        last_activity_ = Clock::now();
    }
    cv_.notify_all();
}

bool BackgroundReeval::quiet_for_idle_time() {
    std::lock_guard<std::mutex> lk(mu_);
    return Clock::now() - last_activity_ >= idle_;
}

void BackgroundReeval::notes_changed() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        pending_ = true;
    }
    cv_.notify_all();
}

void BackgroundReeval::take_result() {
    if (!ready_) return;
    std::unique_lock<std::mutex> sl(engines_.spare_mutex(), std::try_to_lock);
    if (!sl.owns_lock() || !ready_) return;
    engines_.swap();
    memory_.use(std::move(ready_notes_));
    ready_notes_.clear();
    ready_ = false;
}

void BackgroundReeval::spare_overwritten() {
    if (!ready_.exchange(false)) return;
    ready_notes_.clear();
    notes_changed();
}

void BackgroundReeval::loop() {
    std::unique_lock<std::mutex> lk(mu_);
    while (!stop_) {
        if (!pending_) {
            cv_.wait(lk);
            continue;
        }
        const auto quiet = Clock::now() - last_activity_;
        if (quiet < idle_) {
            cv_.wait_for(lk, idle_ - quiet);
            continue;
        }
        lk.unlock();
        const bool finished = evaluate_once();
        lk.lock();
        if (finished && !memory_.stale()) pending_ = false;
        else if (!finished) last_activity_ = Clock::now();  // interrupted: wait for the next quiet moment
    }
}

// One attempt: retrieve the notes for the last window; if they differ from those in use,
// evaluate the new prompt on the spare in chunks. Returns false when a keystroke (or ask, or
// shutdown) interrupted it; the spare keeps what it evaluated for the next try.
bool BackgroundReeval::evaluate_once() {
    const uint64_t gen = activity_gen_.load();
    std::string before;
    size_t wstart;
    {
        std::lock_guard<std::mutex> lk(foreground_);
        if (activity_gen_ != gen) return false;
        // The idle time is checked again here: a suggestion that ran longer than it held this
        // lock while the loop waited, and has just ended (touch() at its end).
        if (!quiet_for_idle_time()) return false;
        if (before_.empty()) return true;  // no document yet: the first suggest() retrieves
        before = before_;
        wstart = planner_.window_start();
    }
    std::unique_lock<std::mutex> sl(engines_.spare_mutex());  // after the foreground lock, never while holding it
    Engine& spare = *engines_.spare();
    memory_.take_stale();
    if (!memory_.usable()) return true;
    std::vector<MemoryItem> notes =
        memory_.retrieve(planner_.window(before).retrieval_text(), planner_.retrieve_params(spare.tokenizer()));
    if (memory_.in_use(notes)) {  // nothing new (or back to the notes in use)
        ready_ = false;
        return true;
    }
    if (ready_ && same_notes(notes, ready_notes_)) return true;
    ready_ = false;
    std::vector<int32_t> prompt;
    try {
        prompt = planner_.plan_at(spare.tokenizer(), notes, before, wstart);
    } catch (const std::exception& e) {
        emit_(EventKind::Error, std::string("background re-evaluation: ") + e.what());
        return true;
    }
    // In chunks of a growing time budget (chunk_schedule.h): a keystroke stops the work before
    // the next chunk.
    size_t done = spare.cached_prefix(prompt);
    if (done == prompt.size()) done--;  // prefill evaluates at least the last token
    const auto t0 = Clock::now();
    double eval_ms = 0;
    int64_t evaluated = 0;
    ChunkSchedule chunks;
    usage_.add_background_start();
    while (done < prompt.size()) {
        if (activity_gen_ != gen) {
            usage_.add_background_cancel();
            return false;
        }
        const size_t next = std::min(prompt.size(), done + (size_t)chunks.next());
        const auto c0 = Clock::now();
        try {
            spare.prefill(std::vector<int32_t>(prompt.begin(), prompt.begin() + (long)next));
        } catch (const std::exception& e) {
            emit_(EventKind::Error, std::string("background re-evaluation: ") + e.what());
            return true;
        }
        const double ms = ms_since(c0);
        eval_ms += ms;
        evaluated += (int64_t)(next - done);
        chunks.done((int64_t)(next - done), ms);
        done = next;
    }
    const size_t n_notes = notes.size();
    ready_notes_ = std::move(notes);
    ready_ = true;
    sl.unlock();  // the next suggest() may swap from here on
    usage_.add_background_run(evaluated, eval_ms);
    emit_(EventKind::MemoryApplied, std::to_string(n_notes) + " memory notes evaluated in the background (" +
                                        std::to_string(evaluated) + " tokens in " + std::to_string((int)eval_ms) + " ms of " +
                                        std::to_string((int)ms_since(t0)) + " ms); the next suggestion uses them");
    return true;
}

}  // namespace tandem
