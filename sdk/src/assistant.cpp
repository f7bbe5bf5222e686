// The Assistant: a facade over its parts, each in its own file.
//
//   local_engines      the model's inference contexts: active (suggestions) and spare
//   suggest_planner    document window + notes + token budget -> the suggestion's prompt
//   suggest_text       the model's continuation -> ghost text (where it ends, the word at the
//                      cursor, no repeats; settings from suggestion_settings)
//   memory_notes       the store, memory requests, the sync, the notes in use
//   cloud_link         the cloud in use (its URL and client; set_cloud replaces it)
//   background_reeval  new notes evaluated on the spare while the writer is idle
//   ask_path           router, cloud or local answer
//   usage_meter        what was spent
//
// The foreground lock (fg_mu_) serializes suggest() and ask()'s local work (which runs on the
// spare context when there is one). Lock order: fg_mu_, then the spare's mutex. set_cloud
// takes only set_cloud_mu_ (one at a time) and never waits for the foreground.
#include "tandem/assistant.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <stdexcept>

#include "ask_path.h"
#include "background_reeval.h"
#include "cloud_link.h"
#include "local_engines.h"
#include "memory_notes.h"
#include "suggest_planner.h"
#include "suggestion_settings.h"
#include "tandem/cloud_adapter.h"
#include "usage_meter.h"

namespace tandem {

const char* event_kind_name(EventKind k) {
    switch (k) {
        case EventKind::ModelLoaded: return "model_loaded";
        case EventKind::GpuNotUsed: return "gpu_not_used";
        case EventKind::Online: return "online";
        case EventKind::Offline: return "offline";
        case EventKind::MemoryUpdated: return "memory_updated";
        case EventKind::MemoryUnavailable: return "memory_unavailable";
        case EventKind::MemoryRequested: return "memory_requested";
        case EventKind::Error: return "error";
        case EventKind::MemoryApplied: return "memory_applied";
        case EventKind::MemoryReset: return "memory_reset";
    }
    return "?";
}

namespace {

class AssistantImpl final : public Assistant {
public:
    AssistantImpl(const AssistantConfig& cfg, EventCallback on_event)
        : suggestion_(suggestion_settings(cfg)), on_event_(std::move(on_event)), emit_([this](EventKind k, const std::string& m) {
              if (on_event_) on_event_({k, m});
          }),
          engines_(cfg, emit_), planner_(cfg), cloud_(cfg, emit_), memory_(cfg, emit_, [this] { notes_changed(); }) {
        privacy_ = cfg.privacy_mode;
        if (cfg.background_reeval) engines_.add_spare(cfg, emit_);
        if (engines_.spare() && memory_.has_store())
            background_ = std::make_unique<BackgroundReeval>(fg_mu_, engines_, memory_, planner_, usage_, emit_, cfg.background_idle_ms);
        ask_ = std::make_unique<AskPath>(cfg, cloud_, engines_.chat_format(), engines_.model_name(), memory_, usage_, emit_,
                                         [this](const std::function<void(Engine&)>& work) { run_for_ask(work); });
        memory_.start_sync(cloud_.current());  // last: its hooks reach background_
    }

    ~AssistantImpl() override {
        memory_.stop_sync();   // joins the sync thread (its hooks reach background_)
        background_.reset();   // joins its thread before the parts it uses go
    }

    SuggestResult suggest(std::string_view document, size_t cursor, const TextCallback& on_piece) override {
        interrupt();  // a newer keystroke wins, over the older one and the background work
        std::lock_guard<std::mutex> lk(fg_mu_);
        touch();
        cursor = std::min(cursor, document.size());
        const std::string_view before = document.substr(0, cursor);
        const DocumentWindow window = planner_.window(before);
        memory_.note_keystroke(window);
        if (background_) {
            background_->set_document(before);
            background_->take_result();
        }

        Engine& engine = engines_.active();
        SuggestResult r;
        const std::vector<MemoryItem> notes =
            memory_.notes_for_suggestion(window, background_ != nullptr, planner_.retrieve_params(engine.tokenizer()));
        for (const auto& n : notes) r.memory.push_back(note_of(n));
        const std::vector<int32_t> prompt = planner_.plan(engine.tokenizer(), notes, before);

        const Generation g = generate_suggestion(engine, prompt, before, suggestion_.params, suggestion_.rules,
                                                 [&](std::string_view p) { return !on_piece || on_piece(p); });
        r.text = g.text;
        r.cancelled = g.finish == FinishReason::Cancelled;
        r.stats = stats_of(g.usage);
        touch();
        usage_.add_suggestion(g.usage);
        return r;
    }

    void cancel() override { interrupt(); }

    AskResult ask(std::string_view instruction, std::string_view selection, const AskOptions& opt,
                  const TextCallback& on_piece) override {
        return ask_->ask(instruction, selection, opt, on_piece, privacy_);
    }

    void set_router_threshold(double t) override { ask_->set_router_threshold(t); }
    double router_threshold() const override { return ask_->router_threshold(); }

    void set_privacy_mode(bool on) override {
        privacy_ = on;
        memory_.set_privacy(on);
    }

    std::vector<MemoryNote> memory_notes(size_t limit) override { return memory_.memory_notes(limit); }

    NoteSource note_source(const MemoryNote& note) override {
        const std::shared_ptr<CloudClient> cloud = cloud_.current();
        if (!cloud) throw std::runtime_error("no cloud configured: sources are kept by the cloud");
        if (privacy_) throw std::runtime_error("privacy mode: the cloud is never contacted");
        auto o = wait_for<SourcePassage>([&](auto cb) { return cloud->get_source(note.doc_id, note.text, cb); });
        if (o.ec) throw std::runtime_error(o.message.empty() ? o.ec.message() : o.message);
        return {o.value.doc_id, o.value.title, o.value.passage, o.value.index, o.value.count};
    }

    UsageTotals usage() const override {
        UsageTotals t = usage_.totals();
        t.online = cloud_.online();
        t.backend = engines_.backend();
        t.model = engines_.model_name();
        t.model_is_chat = engines_.chat_format() != ChatFormat::Raw;
        t.memory_notes = memory_.count();
        return t;
    }

    // The new client is made first (a bad URL throws: nothing changed), becomes the current
    // one (the next ask goes there), then the memory sync moves to it from the stored cursor.
    // The old client goes when its last user (a running ask, the old sync) is done.
    void set_cloud(const std::string& url, const std::string& token) override {
        std::lock_guard<std::mutex> one_at_a_time(set_cloud_mu_);
        std::shared_ptr<CloudClient> fresh = cloud_.make(url, token);
        cloud_.set(url, fresh);
        memory_.start_sync(std::move(fresh));
    }

    std::string cloud_url() const override { return cloud_.url(); }

    void set_document(const std::string& document_id) override { memory_.set_document(document_id); }

private:
    // Stops the running generation and any background evaluation (both check within a token
    // or a chunk). Never waits.
    void interrupt() {
        if (background_) background_->interrupt();
        engines_.cancel();
    }

    // The writer is active now: the background waits for background_idle_ms from here.
    void touch() {
        if (background_) background_->touch();
    }

    void notes_changed() {
        if (background_) background_->notes_changed();
    }

    // ask()'s local work: on the spare when there is one (the active context keeps the
    // suggestion's prefix), else on the active context under the foreground lock.
    void run_for_ask(const std::function<void(Engine&)>& work) {
        interrupt();
        std::lock_guard<std::mutex> lk(fg_mu_);
        touch();
        if (Engine* spare = engines_.spare()) {
            std::lock_guard<std::mutex> sl(engines_.spare_mutex());
            if (background_) background_->spare_overwritten();
            work(*spare);
        } else {
            work(engines_.active());
        }
        touch();
    }

    const SuggestionSettings suggestion_;  // first: checked before the model loads
    EventCallback on_event_;
    Emit emit_;
    std::mutex fg_mu_;  // the foreground lock
    UsageMeter usage_;
    LocalEngines engines_;
    SuggestPlanner planner_;
    CloudLink cloud_;  // declared before memory_ and ask_, which use it
    std::mutex set_cloud_mu_;
    MemoryNotes memory_;
    std::unique_ptr<BackgroundReeval> background_;
    std::unique_ptr<AskPath> ask_;
    std::atomic<bool> privacy_{false};
};

}  // namespace

std::unique_ptr<Assistant> Assistant::create(const AssistantConfig& config, EventCallback on_event) {
    return std::make_unique<AssistantImpl>(config, std::move(on_event));
}

}  // namespace tandem
