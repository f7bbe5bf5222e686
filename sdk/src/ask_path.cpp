// The ask() path (see ask_path.h).
#include "ask_path.h"

#include <algorithm>
#include <stdexcept>

#include "tandem/document_window.h"

namespace tandem {

AskPath::AskPath(const AssistantConfig& cfg, const CloudLink& cloud, ChatFormat format, std::string local_model, MemoryNotes& memory,
                 UsageMeter& usage, Emit emit, LocalRun local)
    : cloud_model_(cfg.cloud_model),
      local_model_(std::move(local_model)),
      cloud_(cloud),
      format_(format),
      memory_(memory),
      usage_(usage),
      emit_(std::move(emit)),
      local_(std::move(local)) {
    if (!cfg.router_path.empty()) {
        router_ = load_router(cfg.router_path);
        if (cfg.router_threshold >= 0) router_->set_threshold(cfg.router_threshold);
    }
    CloudBudget::Limits lim;
    lim.calls_per_hour = cfg.cloud_calls_per_hour;
    lim.tokens_per_day = cfg.cloud_tokens_per_day;
    budget_ = std::make_unique<CloudBudget>(lim);
}

AskResult AskPath::ask(std::string_view instruction, std::string_view selection, const AskOptions& opt,
                       const TextCallback& on_piece, bool privacy) {
    AskResult r;
    const std::string query(instruction);
    const std::shared_ptr<CloudClient> cloud = cloud_.current(), chat = cloud_.chat();  // this ask's cloud
    bool to_cloud = false;
    if (privacy || opt.private_query) {
        r.reason = privacy ? "privacy mode: the cloud is never contacted" : "query marked private: answered locally";
    } else if (!cloud || !chat) {
        r.reason = "no cloud configured";
    } else if (!router_) {
        to_cloud = cloud->connectivity() != Connectivity::offline;
        r.reason = to_cloud ? "no router: the cloud answers" : "offline: answered locally";
    } else {
        RoutePolicy policy;
        policy.offline = cloud->connectivity() == Connectivity::offline;
        policy.budget = budget_.get();
        policy.expected_tokens = opt.max_tokens + estimate_tokens(instruction.size() + selection.size());
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
        if (ask_cloud(*chat, query, selection, opt, on_piece, r, err)) return r;
        r.reason += "; the cloud failed (" + err + "), so the local model answered";
        emit_(EventKind::Error, "cloud chat failed: " + err);
    }
    ask_local(query, selection, opt, on_piece, r);
    return r;
}

void AskPath::set_router_threshold(double t) {
    if (!(t >= 0 && t <= 1)) throw std::invalid_argument("router threshold must be in [0, 1]");
    if (!router_) throw std::runtime_error("no router loaded (AssistantConfig.router_path)");
    router_->set_threshold(t);
}

// The signals the router reads, and only those: a text-only router costs no model work.
RouterSignals AskPath::signals_for(const std::string& query) {
    RouterSignals s;
    const std::vector<Signal> needed = router_->signals();
    auto needs = [&](Signal x) { return std::find(needed.begin(), needed.end(), x) != needed.end(); };
    if (needs(Signal::query_logprob_mean) || needs(Signal::gen_entropy)) {
        local_([&](Engine& engine) {
            const Engine::Signals es = engine.signals(engine.tokenizer().encode(query, engine.tokenizer().add_bos()), 4);
            s.query_logprob_mean = es.logprob_mean;
            s.gen_entropy = es.gen_entropy;
        });
    }
    if (needs(Signal::memory_coverage)) s.memory_coverage = memory_.coverage(query);
    return s;
}

bool AskPath::ask_cloud(CloudClient& chat, const std::string& query, std::string_view selection, const AskOptions& opt,
                        const TextCallback& on_piece, AskResult& r, std::string& err) {
    ChatRequest req;
    req.model = cloud_model_;
    req.max_tokens = opt.max_tokens;
    req.messages.push_back({"system", "You are a writing assistant. Answer concisely."});
    req.messages.push_back({"user", selection.empty() ? query : query + "\n\nText:\n" + std::string(selection)});
    std::atomic<bool> stop{false};
    auto o = wait_for<ChatResult>([&](auto cb) {
        return chat.chat_stream(req, [&](std::string_view d) { if (on_piece && !stop) stop = !on_piece(d); }, cb);
    });
    if (o.ec) {
        err = o.message.empty() ? o.ec.message() : o.message;
        return false;
    }
    r.text = o.value.text;
    r.answered_by = "cloud";
    r.model = o.value.model.empty() ? cloud_model_ : o.value.model;
    const int64_t prompt_tokens = estimate_tokens(query.size() + selection.size());  // the server does not report usage
    const int64_t completion_tokens = estimate_tokens(r.text.size());
    budget_->record(prompt_tokens + completion_tokens);
    usage_.add_cloud_ask(prompt_tokens, completion_tokens);
    return true;
}

void AskPath::ask_local(const std::string& query, std::string_view selection, const AskOptions& opt,
                        const TextCallback& on_piece, AskResult& r) {
    local_([&](Engine& engine) {
        std::vector<ChatTurn> turns;
        turns.push_back({"user", selection.empty() ? query : query + "\n\n" + std::string(selection)});
        const std::vector<int32_t> prompt = apply_chat_template(format_, turns, true, engine.tokenizer());
        GenerateParams gp;
        gp.max_tokens = opt.max_tokens;
        gp.sampling.temperature = 0.7f;
        gp.on_prompt_progress = opt.on_prompt_progress;
        const Generation g = engine.generate_tokens(prompt, gp, [&](std::string_view p) { return !on_piece || on_piece(p); });
        r.text = g.text;
        r.answered_by = "local";
        r.model = local_model_;
        r.cancelled = g.finish == FinishReason::Cancelled;
        r.stats = stats_of(g.usage);
        usage_.add_local_ask(g.usage);
    });
}

}  // namespace tandem
