// The Assistant: orchestrates the engine, memory store, memory sync, cloud client and router.
#include "tandem/assistant.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "memory_coordinator.h"
#include "tandem/memory_sync.h"
#include "tandem/backend.h"
#include "tandem/chat_template.h"
#include "tandem/cloud_adapter.h"
#include "tandem/engine.h"
#include "tandem/memory_store.h"
#include "tandem/router.h"
#include "tandem/suggest_prompt.h"

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
    }
    return "?";
}

namespace {

GenerationStats stats_of(const Usage& u) {
    GenerationStats s;
    s.prompt_tokens = u.prompt_tokens;
    s.reused_tokens = u.reused_tokens;
    s.completion_tokens = u.completion_tokens;
    s.ttft_ms = u.ttft_ms;
    s.tokens_per_s = u.decode_tokens_per_s();
    s.decode_ms = u.decode_ms;
    return s;
}

MemoryNote note_of(const MemoryItem& m) { return {m.id, m.text, m.doc_id, m.title}; }

bool same_notes(const std::vector<MemoryItem>& a, const std::vector<MemoryItem>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); i++)
        if (a[i].id != b[i].id || a[i].text != b[i].text) return false;
    return true;
}

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
    size_t n = 0;
    while (n < a.size() && n < b.size() && a[n] == b[n]) n++;
    return n;
}

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

class AssistantImpl final : public Assistant {
public:
    AssistantImpl(const AssistantConfig& cfg, EventCallback on_event)
        : cfg_(cfg), on_event_(std::move(on_event)), coordinator_(cfg.memory_edit_threshold, cfg.memory_window_words) {
        if (cfg.model_path.empty()) throw std::invalid_argument("AssistantConfig.model_path is required");
        if (cfg.backend != "auto" && cfg.backend != "cpu" && cfg.backend != "cuda")
            throw std::invalid_argument("AssistantConfig.backend must be auto, cpu or cuda, not '" + cfg.backend + "'");
        privacy_ = cfg.privacy_mode;
        EngineParams ep;
        ep.context.n_ctx = cfg.n_ctx;
        ep.context.n_threads = cfg.n_threads;
        std::string gpu_not_used;
        ep.make_context = make_backend_factory(cfg.backend, [&](const std::string& why) { gpu_not_used = why; });
        engines_[0] = Engine::load(cfg.model_path, ep);
        backend_ = engine().context().backend_name();
        format_ = detect_chat_format(engine().model().file());
        model_name_ = engine().model().config().name;
        if (model_name_.empty()) model_name_ = cfg.model_path.substr(cfg.model_path.find_last_of('/') + 1);
        emit(EventKind::ModelLoaded, engine().model().config().architecture + " model " + cfg.model_path + " on the " + backend_);
        if (!gpu_not_used.empty()) emit(EventKind::GpuNotUsed, gpu_not_used);

        if (!cfg.memory_db.empty()) open_store();
        if (store_ && cfg.background_reeval) {
            // The shadow context for background re-evaluation (same file: the CPU maps it once),
            // always on the active context's backend: a swap must never move suggestions to
            // another device. When a second context does not fit there (e.g. too little VRAM
            // for a second copy of the weights), background re-evaluation is off and an Error
            // event says why; the Assistant works as with background_reeval = false.
            auto shadow_params = ep;
            shadow_params.make_context = make_backend_factory(backend_, [](const std::string&) {});
            try {
                engines_[1] = Engine::load(cfg.model_path, shadow_params);
            } catch (const std::exception& e) {
                emit(EventKind::Error, "background re-evaluation off: no second " + backend_ + " context (" + e.what() + ")");
            }
            if (engines_[1]) bg_thread_ = std::thread([this] { reeval_loop(); });
        }
        if (!cfg.cloud_url.empty()) {
            CloudConfig cc;
            cc.base_url = cfg.cloud_url;
            cc.token = cfg.cloud_token;
            cc.verify_tls = cfg.verify_tls;
            cc.request_timeout = Millis(30000);
            cloud_ = std::make_unique<CloudClient>(cc);
            cloud_->set_connectivity_callback([this](const ConnectivityEvent& e) {
                if (e.state == Connectivity::online) emit(EventKind::Online, "cloud reachable");
                if (e.state == Connectivity::offline) emit(EventKind::Offline, "cloud unreachable: " + e.reason);
            });
            if (!cfg.cloud_chat_url.empty() && cfg.cloud_chat_url != cfg.cloud_url) {
                CloudConfig chat = cc;
                chat.base_url = cfg.cloud_chat_url;
                chat_ = std::make_unique<CloudClient>(chat);
            }
            if (store_) start_sync();
        }
        if (!cfg.router_path.empty()) {
            router_ = load_router(cfg.router_path);
            if (cfg.router_threshold >= 0) router_->set_threshold(cfg.router_threshold);
        }
        CloudBudget::Limits lim;
        lim.calls_per_hour = cfg.cloud_calls_per_hour;
        lim.tokens_per_day = cfg.cloud_tokens_per_day;
        budget_ = std::make_unique<CloudBudget>(lim);
    }

    ~AssistantImpl() override {
        {
            std::lock_guard<std::mutex> lk(bg_mu_);
            bg_stop_ = true;
        }
        activity_gen_++;
        bg_cv_.notify_all();
        if (bg_thread_.joinable()) bg_thread_.join();
        sync_.reset();   // joins the sync thread before the store and client go
        cloud_.reset();
        chat_.reset();
    }

    // ---- suggest ------------------------------------------------------------------------

    SuggestResult suggest(std::string_view document, size_t cursor, const TextCallback& on_piece) override {
        interrupt();  // a newer keystroke wins, over the older one and the background work
        std::lock_guard<std::mutex> lk(suggest_mu_);
        touch();
        cursor = std::min(cursor, document.size());
        const std::string_view before = document.substr(0, cursor);
        maybe_request_memory(before);
        if (engines_[1]) {
            last_before_.assign(before);
            take_background_result();
        }

        SuggestResult r;
        const std::vector<MemoryItem> notes = notes_for(before);
        for (const auto& n : notes) r.memory.push_back(note_of(n));
        const std::vector<int32_t> prompt = build_prompt(engine().tokenizer(), notes, before, window_start_);
        active_prompt_ = prompt;

        GenerateParams gp;
        gp.max_tokens = cfg_.suggestion_tokens;
        gp.sampling.temperature = 0;  // ghost text: the most likely continuation, stable across keystrokes
        gp.stop = {"\n\n"};
        const Generation g = engine().generate_tokens(prompt, gp, [&](std::string_view p) { return !on_piece || on_piece(p); });
        r.text = g.text;
        r.cancelled = g.finish == FinishReason::Cancelled;
        r.stats = stats_of(g.usage);
        touch();
        std::lock_guard<std::mutex> u(usage_mu_);
        usage_.suggestions++;
        usage_.prompt_tokens += g.usage.prompt_tokens - g.usage.reused_tokens;
        usage_.completion_tokens += g.usage.completion_tokens;
        usage_.last_ttft_ms = r.stats.ttft_ms;
        usage_.last_tokens_per_s = r.stats.tokens_per_s;
        return r;
    }

    void cancel() override { interrupt(); }

    // ---- ask ----------------------------------------------------------------------------

    AskResult ask(std::string_view instruction, std::string_view selection, const AskOptions& opt,
                  const TextCallback& on_piece) override {
        AskResult r;
        const std::string query(instruction);
        bool to_cloud = false;
        if (privacy_ || opt.private_query) {
            r.reason = privacy_ ? "privacy mode: the cloud is never contacted" : "query marked private: answered locally";
        } else if (!cloud_) {
            r.reason = "no cloud configured";
        } else if (!router_) {
            to_cloud = cloud_->connectivity() != Connectivity::offline;
            r.reason = to_cloud ? "no router: the cloud answers" : "offline: answered locally";
        } else {
            RoutePolicy policy;
            policy.offline = cloud_->connectivity() == Connectivity::offline;
            policy.budget = budget_.get();
            policy.expected_tokens = opt.max_tokens + (int64_t)(instruction.size() + selection.size()) / 4;
            const Decision d = router_->decide(query, signals_for(query), policy);
            r.router_score = d.score;
            r.router_threshold = d.threshold;
            to_cloud = d.route == Route::cloud;
            r.reason = d.reason != OverrideReason::none
                           ? std::string("policy: ") + override_reason_name(d.reason)
                           : "router score " + std::to_string(d.score) + (to_cloud ? " < " : " >= ") + "threshold " +
                                 std::to_string(d.threshold);
        }
        if (to_cloud) {
            std::string err;
            if (ask_cloud(query, selection, opt, on_piece, r, err)) return r;
            r.reason += "; the cloud failed (" + err + "), so the local model answered";
            emit(EventKind::Error, "cloud chat failed: " + err);
        }
        ask_local(query, selection, opt, on_piece, r);
        return r;
    }

    void set_router_threshold(double t) override {
        if (!(t >= 0 && t <= 1)) throw std::invalid_argument("router threshold must be in [0, 1]");
        if (!router_) throw std::runtime_error("no router loaded (AssistantConfig.router_path)");
        router_->set_threshold(t);
    }
    double router_threshold() const override { return router_ ? router_->threshold() : -1; }

    void set_privacy_mode(bool on) override {
        privacy_ = on;
        if (sync_) sync_->set_paused(on || memory_disabled_);
    }

    std::vector<MemoryNote> memory_notes(size_t limit) override {
        std::vector<MemoryNote> out;
        std::lock_guard<std::mutex> lk(store_mu_);
        if (!memory_usable()) return out;
        try {
            RetrieveParams rp;
            rp.max_items = limit;
            rp.budget = 1u << 20;
            for (const auto& m : store_->retrieve(last_window_, rp)) out.push_back(note_of(m));
        } catch (const std::exception& e) {
            memory_failed(e.what());
        }
        return out;
    }

    NoteSource note_source(const MemoryNote& note) override {
        if (!cloud_) throw std::runtime_error("no cloud configured: sources are kept by the cloud");
        if (privacy_) throw std::runtime_error("privacy mode: the cloud is never contacted");
        auto o = wait_for<SourcePassage>([&](auto cb) { return cloud_->get_source(note.doc_id, note.text, cb); });
        if (o.ec) throw std::runtime_error(o.message.empty() ? o.ec.message() : o.message);
        return {o.value.doc_id, o.value.title, o.value.passage, o.value.index, o.value.count};
    }

    UsageTotals usage() const override {
        std::lock_guard<std::mutex> u(usage_mu_);
        UsageTotals t = usage_;
        t.online = cloud_ && cloud_->connectivity() != Connectivity::offline;
        t.backend = backend_;
        t.model = model_name_;
        t.model_is_chat = format_ != ChatFormat::Raw;
        t.memory_notes = memory_count_.load();
        return t;
    }

private:
    Engine& engine() { return *engines_[active_]; }

    // Stops the running generation and any background evaluation (both check within a token
    // or a chunk). Never waits.
    void interrupt() {
        activity_gen_++;
        for (auto& e : engines_)
            if (e) e->cancel();
    }

    // The writer is active now: the background waits for background_idle_ms from here.
    void touch() {
        {
            std::lock_guard<std::mutex> lk(bg_mu_);
            last_activity_ = Clock::now();
        }
        bg_cv_.notify_all();
    }

    void emit(EventKind k, const std::string& msg) {
        if (on_event_) on_event_({k, msg});
    }

    void open_store() {
        try {
            MemoryStoreParams mp;
            mp.path = cfg_.memory_db;
            store_ = std::make_unique<MemoryStore>(mp);
            memory_count_ = store_->stats().n_items;
        } catch (const std::exception& e) {
            store_.reset();
            emit(EventKind::MemoryUnavailable, std::string("memory disabled, suggestions go on without it: ") + e.what());
        }
    }

    // Called with store_mu_ held: stop using the store, say so, keep generating. The store
    // object stays alive (the sync thread holds a reference to it) and the sync is paused.
    void memory_failed(const std::string& why) {
        if (memory_disabled_) return;
        emit(EventKind::MemoryUnavailable, "memory store failed, suggestions go on without memory: " + why);
        memory_disabled_ = true;
        if (sync_) sync_->set_paused(true);
    }
    bool memory_usable() const { return store_ && !memory_disabled_; }

    void start_sync() {
        MemorySync::Hooks h;
        h.on_changes = [this](int64_t added, int64_t deleted) {
            mark_notes_stale();
            {
                std::lock_guard<std::mutex> lk(store_mu_);
                try {
                    if (memory_usable()) memory_count_ = store_->stats().n_items;
                } catch (const std::exception& e) {
                    memory_failed(e.what());
                }
            }
            emit(EventKind::MemoryUpdated, std::to_string(added) + " memory notes arrived, " + std::to_string(deleted) + " retracted");
        };
        h.on_error = [this](const std::string& m) { emit(EventKind::Error, m); };
        sync_ = std::make_unique<MemorySync>(*cloud_, *store_, store_mu_, h);
        if (privacy_) sync_->set_paused(true);
    }

    void maybe_request_memory(std::string_view before) {
        std::lock_guard<std::mutex> lk(store_mu_);
        last_window_.assign(before.substr(before.size() > 4000 ? before.size() - 4000 : 0));
        if (!memory_usable() || !coordinator_.should_request(before)) return;
        const std::string id = "req-" + std::to_string(unix_ms_now()) + "-" + std::to_string(++request_seq_);
        try {
            store_->outbox_enqueue(id, coordinator_.context_of(before));
        } catch (const std::exception& e) {
            memory_failed(e.what());
            return;
        }
        mark_notes_stale();
        emit(EventKind::MemoryRequested, "memory request " + id + " queued (" + std::to_string(coordinator_.last_distance()) + " words changed)");
        if (sync_) sync_->wake();
    }

    // The notes for this window: re-retrieved only when memory changed or the coordinator saw
    // the text move on, and then only at a sentence or paragraph end (or before the first
    // notes): new notes change the prompt's prefix, so the whole window is evaluated again
    // (about a second for 1k tokens on 2 CPU cores); mid-sentence keystrokes keep the old notes
    // and their KV cache.
    // With background re-evaluation, only the first suggestion retrieves here (its whole
    // prompt is evaluated anyway); later notes come from take_background_result().
    std::vector<MemoryItem> notes_for(std::string_view before) {
        std::lock_guard<std::mutex> lk(store_mu_);
        if (!memory_usable()) return {};
        const char last = before.empty() ? '\n' : before.back();
        const bool at_boundary = engines_[1] ? !notes_retrieved_
                                             : notes_.empty() || last == '\n' || last == '.' || last == '!' || last == '?';
        if (at_boundary && notes_stale_.exchange(false)) {
            notes_ = retrieve_locked(engine().tokenizer(), before);
            notes_retrieved_ = true;
        }
        return notes_;
    }

    // The notes for the window `before`, with store_mu_ held. A failing store disables memory.
    std::vector<MemoryItem> retrieve_locked(const Tokenizer& tok, std::string_view before) {
        try {
            const RetrieveParams rp =
                suggest_retrieve_params((size_t)cfg_.memory_max_items, (size_t)cfg_.memory_budget_tokens, tok);
            return store_->retrieve(suggest_retrieval_window(before), rp);
        } catch (const std::exception& e) {
            memory_failed(e.what());
            return {};
        }
    }

    void mark_notes_stale() {
        notes_stale_ = true;
        if (!engines_[1]) return;
        {
            std::lock_guard<std::mutex> lk(bg_mu_);
            bg_pending_ = true;
        }
        bg_cv_.notify_all();
    }

    // ---- background re-evaluation ---------------------------------------------------------
    //
    // engines_[active_] serves suggest()/ask(); engines_[1 - active_] (the shadow) belongs to
    // the background thread, which fills its KV cache with the prompt that new notes make.
    // When that is complete, the next suggest() swaps the two (under suggest_mu_ and
    // shadow_mu_), so its own prompt differs only in the keystrokes typed since.

    void reeval_loop() {
        std::unique_lock<std::mutex> lk(bg_mu_);
        const auto idle = std::chrono::milliseconds(std::max(0, cfg_.background_idle_ms));
        while (!bg_stop_) {
            if (!bg_pending_) {
                bg_cv_.wait(lk);
                continue;
            }
            const auto quiet = Clock::now() - last_activity_;
            if (quiet < idle) {
                bg_cv_.wait_for(lk, idle - quiet);
                continue;
            }
            lk.unlock();
            const bool finished = reeval_once();
            lk.lock();
            if (finished && !notes_stale_) bg_pending_ = false;
            else if (!finished) last_activity_ = Clock::now();  // interrupted: wait for the next quiet moment
        }
    }

    // One attempt: retrieve the notes for the last window; if they differ from those in use,
    // evaluate the new prompt on the shadow in chunks. Returns false when a keystroke (or
    // ask, or shutdown) interrupted it; the shadow keeps what it evaluated for the next try.
    bool reeval_once() {
        const uint64_t gen = activity_gen_.load();
        std::string before;
        size_t wstart;
        {
            std::lock_guard<std::mutex> lk(suggest_mu_);
            if (activity_gen_ != gen) return false;
            if (last_before_.empty()) return true;  // no document yet: the first suggest() retrieves
            before = last_before_;
            wstart = window_start_;
        }
        std::unique_lock<std::mutex> sl(shadow_mu_);  // after suggest_mu_, never while holding it
        Engine& shadow = *engines_[1 - active_];
        notes_stale_ = false;
        std::vector<MemoryItem> notes;
        {
            std::lock_guard<std::mutex> lk(store_mu_);
            if (!memory_usable()) return true;
            notes = retrieve_locked(shadow.tokenizer(), before);
            if (same_notes(notes, notes_)) {  // nothing new (or back to the notes in use)
                ready_ = false;
                return true;
            }
        }
        if (ready_ && same_notes(notes, ready_notes_)) return true;
        ready_ = false;
        std::vector<int32_t> prompt;
        try {
            prompt = build_prompt(shadow.tokenizer(), notes, before, wstart);
        } catch (const std::exception& e) {
            emit(EventKind::Error, std::string("background re-evaluation: ") + e.what());
            return true;
        }
        // Chunks of ~15 ms, so that a keystroke shares the cores with at most one of them.
        size_t done = common_prefix(shadow_cached_, prompt);
        if (done == prompt.size()) done--;  // prefill evaluates at least the last token
        shadow_cached_.resize(done);
        const auto t0 = Clock::now();
        double eval_ms = 0;
        int64_t chunk = 8, evaluated = 0;
        while (done < prompt.size()) {
            if (activity_gen_ != gen) {
                std::lock_guard<std::mutex> u(usage_mu_);
                usage_.background_cancels++;
                return false;
            }
            const size_t next = std::min(prompt.size(), done + (size_t)chunk);
            const auto c0 = Clock::now();
            try {
                shadow.prefill(std::vector<int32_t>(prompt.begin(), prompt.begin() + (long)next));
            } catch (const std::exception& e) {
                shadow_cached_.clear();
                emit(EventKind::Error, std::string("background re-evaluation: ") + e.what());
                return true;
            }
            const double ms = ms_since(c0);
            eval_ms += ms;
            evaluated += (int64_t)(next - done);
            shadow_cached_.assign(prompt.begin(), prompt.begin() + (long)next);
            const double per_token = ms / (double)(next - done);
            chunk = std::clamp<int64_t>((int64_t)(15.0 / std::max(per_token, 1e-3)), 4, 128);
            done = next;
        }
        const size_t n_notes = notes.size();
        ready_notes_ = std::move(notes);
        ready_ = true;
        sl.unlock();  // the next suggest() may swap from here on
        {
            std::lock_guard<std::mutex> u(usage_mu_);
            usage_.background_runs++;
            usage_.background_tokens += evaluated;
            usage_.last_background_ms = eval_ms;
        }
        emit(EventKind::MemoryApplied, std::to_string(n_notes) + " memory notes evaluated in the background (" +
                                           std::to_string(evaluated) + " tokens in " + std::to_string((int)eval_ms) + " ms of " +
                                           std::to_string((int)ms_since(t0)) + " ms); the next suggestion uses them");
        return true;
    }

    // Called by suggest() with suggest_mu_ held: a completed background evaluation becomes the
    // active context. Never waits (the background holds shadow_mu_ only while evaluating).
    void take_background_result() {
        if (!ready_) return;
        std::unique_lock<std::mutex> sl(shadow_mu_, std::try_to_lock);
        if (!sl.owns_lock() || !ready_) return;
        active_ = 1 - active_;
        shadow_cached_ = active_prompt_;  // what the old active context holds (at least)
        std::lock_guard<std::mutex> lk(store_mu_);
        notes_ = std::move(ready_notes_);
        ready_notes_.clear();
        ready_ = false;
    }

    // [BOS] notes (one per line) blank line, then the document window (tandem/suggest_prompt.h).
    std::vector<int32_t> build_prompt(const Tokenizer& tok, const std::vector<MemoryItem>& notes, std::string_view before,
                                      size_t& window_start) const {
        std::vector<std::string> texts;
        for (const auto& n : notes) texts.push_back(n.text);
        return build_suggest_prompt(tok, texts, before, cfg_.n_ctx, cfg_.suggestion_tokens, &window_start);
    }

    RouterSignals signals_for(const std::string& query) {
        RouterSignals s;
        const auto* logistic = dynamic_cast<const LogisticRouter*>(router_.get());
        if (!logistic || logistic->config().signals.empty()) return s;  // text-only router: no model work
        interrupt();
        std::lock_guard<std::mutex> lk(suggest_mu_);
        touch();
        active_prompt_.clear();
        const Engine::Signals es = engine().signals(engine().tokenizer().encode(query, engine().tokenizer().add_bos()), 4);
        s.query_logprob_mean = es.logprob_mean;
        s.gen_entropy = es.gen_entropy;
        std::lock_guard<std::mutex> st(store_mu_);
        s.memory_coverage = 0.0;
        try {
            if (memory_usable()) s.memory_coverage = store_->coverage(query);
        } catch (const std::exception& e) {
            memory_failed(e.what());
        }
        return s;
    }

    bool ask_cloud(const std::string& query, std::string_view selection, const AskOptions& opt, const TextCallback& on_piece,
                   AskResult& r, std::string& err) {
        CloudClient& c = chat_ ? *chat_ : *cloud_;
        ChatRequest req;
        req.model = cfg_.cloud_model;
        req.max_tokens = opt.max_tokens;
        req.messages.push_back({"system", "You are a writing assistant. Answer concisely."});
        req.messages.push_back({"user", selection.empty() ? query : query + "\n\nText:\n" + std::string(selection)});
        std::atomic<bool> stop{false};
        auto o = wait_for<ChatResult>([&](auto cb) {
            return c.chat_stream(req, [&](std::string_view d) { if (on_piece && !stop) stop = !on_piece(d); }, cb);
        });
        if (o.ec) {
            err = o.message.empty() ? o.ec.message() : o.message;
            return false;
        }
        r.text = o.value.text;
        r.answered_by = "cloud";
        r.model = o.value.model.empty() ? cfg_.cloud_model : o.value.model;
        budget_->record((int64_t)(query.size() + selection.size()) / 4 + (int64_t)r.text.size() / 4);
        std::lock_guard<std::mutex> u(usage_mu_);
        usage_.cloud_asks++;
        usage_.cloud_prompt_tokens += (int64_t)(query.size() + selection.size()) / 4;  // estimate: server does not report usage
        usage_.cloud_completion_tokens += (int64_t)r.text.size() / 4;
        return true;
    }

    void ask_local(const std::string& query, std::string_view selection, const AskOptions& opt, const TextCallback& on_piece,
                   AskResult& r) {
        interrupt();
        std::lock_guard<std::mutex> lk(suggest_mu_);
        touch();
        std::vector<ChatTurn> turns;
        turns.push_back({"user", selection.empty() ? query : query + "\n\n" + std::string(selection)});
        const std::vector<int32_t> prompt = apply_chat_template(format_, turns, true, engine().tokenizer());
        active_prompt_ = prompt;
        GenerateParams gp;
        gp.max_tokens = opt.max_tokens;
        gp.sampling.temperature = 0.7f;
        const Generation g = engine().generate_tokens(prompt, gp, [&](std::string_view p) { return !on_piece || on_piece(p); });
        touch();
        r.text = g.text;
        r.answered_by = "local";
        r.model = model_name_;
        r.cancelled = g.finish == FinishReason::Cancelled;
        r.stats = stats_of(g.usage);
        std::lock_guard<std::mutex> u(usage_mu_);
        usage_.local_asks++;
        usage_.prompt_tokens += g.usage.prompt_tokens - g.usage.reused_tokens;
        usage_.completion_tokens += g.usage.completion_tokens;
    }

    AssistantConfig cfg_;
    EventCallback on_event_;
    std::unique_ptr<Engine> engines_[2];  // [active_] serves calls; the other is the background's shadow
    int active_ = 0;                      // changes under suggest_mu_ + shadow_mu_
    ChatFormat format_ = ChatFormat::Raw;
    std::string backend_;  // "cpu" or "cuda", as the engine reports
    std::string model_name_;  // GGUF general.name, else the file name
    std::mutex store_mu_;                 // guards store_, notes_, last_window_, coordinator_
    std::unique_ptr<MemoryStore> store_;
    std::unique_ptr<CloudClient> cloud_, chat_;
    std::unique_ptr<MemorySync> sync_;
    std::unique_ptr<Router> router_;
    std::unique_ptr<CloudBudget> budget_;
    MemoryCoordinator coordinator_;
    std::vector<MemoryItem> notes_;
    std::atomic<bool> notes_stale_{true};
    std::string last_window_;
    uint64_t request_seq_ = 0;
    std::atomic<bool> memory_disabled_{false};  // the store failed: no memory from now on
    std::atomic<bool> privacy_{false};
    std::atomic<int64_t> memory_count_{0};
    std::mutex suggest_mu_;               // guards window_start_, last_before_, active_prompt_
    size_t window_start_ = 0;
    std::string last_before_;             // the last suggest()'s text before the cursor
    std::vector<int32_t> active_prompt_;  // the last prompt given to the active engine
    bool notes_retrieved_ = false;
    // background re-evaluation
    std::thread bg_thread_;
    std::mutex bg_mu_;                    // guards bg_pending_, bg_stop_, last_activity_
    std::condition_variable bg_cv_;
    bool bg_pending_ = false, bg_stop_ = false;
    Clock::time_point last_activity_ = Clock::now();
    std::atomic<uint64_t> activity_gen_{0};  // bumped by every suggest/ask/cancel: stops the background
    std::mutex shadow_mu_;                // held by the background while it uses the shadow
    std::vector<int32_t> shadow_cached_;  // a prefix of what the shadow's KV cache holds
    std::atomic<bool> ready_{false};      // the shadow holds the prompt for ready_notes_
    std::vector<MemoryItem> ready_notes_;
    mutable std::mutex usage_mu_;
    UsageTotals usage_;
};

}  // namespace

std::unique_ptr<Assistant> Assistant::create(const AssistantConfig& config, EventCallback on_event) {
    return std::make_unique<AssistantImpl>(config, std::move(on_event));
}

}  // namespace tandem
