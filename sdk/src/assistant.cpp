// The Assistant: orchestrates the engine, memory store, memory sync, cloud client and router.
#include "tandem/assistant.h"

#include <atomic>
#include <mutex>
#include <stdexcept>

#include "memory_coordinator.h"
#include "memory_sync.h"
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
    return s;
}

MemoryNote note_of(const MemoryItem& m) { return {m.id, m.text, m.doc_id, m.title}; }

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
        engine_ = Engine::load(cfg.model_path, ep);
        backend_ = engine_->context().backend_name();
        format_ = detect_chat_format(engine_->model().file());
        emit(EventKind::ModelLoaded, engine_->model().config().architecture + " model " + cfg.model_path + " on the " + backend_);
        if (!gpu_not_used.empty()) emit(EventKind::GpuNotUsed, gpu_not_used);

        if (!cfg.memory_db.empty()) open_store();
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
        sync_.reset();   // joins the sync thread before the store and client go
        cloud_.reset();
        chat_.reset();
    }

    // ---- suggest ------------------------------------------------------------------------

    SuggestResult suggest(std::string_view document, size_t cursor, const TextCallback& on_piece) override {
        engine_->cancel();  // a newer keystroke wins
        std::lock_guard<std::mutex> lk(suggest_mu_);
        cursor = std::min(cursor, document.size());
        const std::string_view before = document.substr(0, cursor);
        maybe_request_memory(before);

        SuggestResult r;
        const std::vector<MemoryItem> notes = notes_for(before);
        for (const auto& n : notes) r.memory.push_back(note_of(n));
        const std::vector<int32_t> prompt = build_prompt(notes, before);

        GenerateParams gp;
        gp.max_tokens = cfg_.suggestion_tokens;
        gp.sampling.temperature = 0;  // ghost text: the most likely continuation, stable across keystrokes
        gp.stop = {"\n\n"};
        const Generation g = engine_->generate_tokens(prompt, gp, [&](std::string_view p) { return !on_piece || on_piece(p); });
        r.text = g.text;
        r.cancelled = g.finish == FinishReason::Cancelled;
        r.stats = stats_of(g.usage);
        std::lock_guard<std::mutex> u(usage_mu_);
        usage_.suggestions++;
        usage_.prompt_tokens += g.usage.prompt_tokens - g.usage.reused_tokens;
        usage_.completion_tokens += g.usage.completion_tokens;
        usage_.last_ttft_ms = r.stats.ttft_ms;
        usage_.last_tokens_per_s = r.stats.tokens_per_s;
        return r;
    }

    void cancel() override { engine_->cancel(); }

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

    UsageTotals usage() const override {
        std::lock_guard<std::mutex> u(usage_mu_);
        UsageTotals t = usage_;
        t.online = cloud_ && cloud_->connectivity() != Connectivity::offline;
        t.backend = backend_;
        t.memory_notes = memory_count_.load();
        return t;
    }

private:
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
            notes_stale_ = true;
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
        notes_stale_ = true;
        emit(EventKind::MemoryRequested, "memory request " + id + " queued (" + std::to_string(coordinator_.last_distance()) + " words changed)");
        if (sync_) sync_->wake();
    }

    // The notes for this window: re-retrieved only when memory changed or the coordinator saw
    // the text move on, and then only at a sentence or paragraph end (or before the first
    // notes): new notes change the prompt's prefix, so the whole window is evaluated again
    // (about a second for 1k tokens on 2 CPU cores); mid-sentence keystrokes keep the old notes
    // and their KV cache.
    std::vector<MemoryItem> notes_for(std::string_view before) {
        std::lock_guard<std::mutex> lk(store_mu_);
        if (!memory_usable()) return {};
        const char last = before.empty() ? '\n' : before.back();
        const bool at_boundary = notes_.empty() || last == '\n' || last == '.' || last == '!' || last == '?';
        if (at_boundary && notes_stale_.exchange(false)) {
            try {
                const RetrieveParams rp = suggest_retrieve_params((size_t)cfg_.memory_max_items,
                                                                  (size_t)cfg_.memory_budget_tokens, engine_->tokenizer());
                notes_ = store_->retrieve(suggest_retrieval_window(before), rp);
            } catch (const std::exception& e) {
                memory_failed(e.what());
                notes_.clear();
            }
        }
        return notes_;
    }

    // [BOS] notes (one per line) blank line, then the document window (tandem/suggest_prompt.h).
    std::vector<int32_t> build_prompt(const std::vector<MemoryItem>& notes, std::string_view before) {
        std::vector<std::string> texts;
        for (const auto& n : notes) texts.push_back(n.text);
        return build_suggest_prompt(engine_->tokenizer(), texts, before, cfg_.n_ctx, cfg_.suggestion_tokens, &window_start_);
    }

    RouterSignals signals_for(const std::string& query) {
        RouterSignals s;
        const auto* logistic = dynamic_cast<const LogisticRouter*>(router_.get());
        if (!logistic || logistic->config().signals.empty()) return s;  // text-only router: no model work
        std::lock_guard<std::mutex> lk(suggest_mu_);
        const Engine::Signals es = engine_->signals(engine_->tokenizer().encode(query, engine_->tokenizer().add_bos()), 4);
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
        budget_->record((int64_t)(query.size() + selection.size()) / 4 + (int64_t)r.text.size() / 4);
        std::lock_guard<std::mutex> u(usage_mu_);
        usage_.cloud_asks++;
        usage_.cloud_prompt_tokens += (int64_t)(query.size() + selection.size()) / 4;  // estimate: server does not report usage
        usage_.cloud_completion_tokens += (int64_t)r.text.size() / 4;
        return true;
    }

    void ask_local(const std::string& query, std::string_view selection, const AskOptions& opt, const TextCallback& on_piece,
                   AskResult& r) {
        engine_->cancel();
        std::lock_guard<std::mutex> lk(suggest_mu_);
        std::vector<ChatTurn> turns;
        turns.push_back({"user", selection.empty() ? query : query + "\n\n" + std::string(selection)});
        const std::vector<int32_t> prompt = apply_chat_template(format_, turns, true, engine_->tokenizer());
        GenerateParams gp;
        gp.max_tokens = opt.max_tokens;
        gp.sampling.temperature = 0.7f;
        const Generation g = engine_->generate_tokens(prompt, gp, [&](std::string_view p) { return !on_piece || on_piece(p); });
        r.text = g.text;
        r.answered_by = "local";
        r.cancelled = g.finish == FinishReason::Cancelled;
        r.stats = stats_of(g.usage);
        std::lock_guard<std::mutex> u(usage_mu_);
        usage_.local_asks++;
        usage_.prompt_tokens += g.usage.prompt_tokens - g.usage.reused_tokens;
        usage_.completion_tokens += g.usage.completion_tokens;
    }

    AssistantConfig cfg_;
    EventCallback on_event_;
    std::unique_ptr<Engine> engine_;
    ChatFormat format_ = ChatFormat::Raw;
    std::string backend_;  // "cpu" or "cuda", as the engine reports
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
    std::mutex suggest_mu_;
    size_t window_start_ = 0;
    mutable std::mutex usage_mu_;
    UsageTotals usage_;
};

}  // namespace

std::unique_ptr<Assistant> Assistant::create(const AssistantConfig& config, EventCallback on_event) {
    return std::make_unique<AssistantImpl>(config, std::move(on_event));
}

}  // namespace tandem
