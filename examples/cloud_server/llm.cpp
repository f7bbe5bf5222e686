// Model-backed memory notes and chat generation for tandem-cloud (see llm.h).
#include "tandem/cloud/llm.h"

#include <cstdio>

#include "tandem/chat_template.h"

namespace tandem::cloud {

// The first complete sentence of `s` (ending in . ! or ?), line breaks as spaces; "" when
// there is none or it is too short to be a note.
static std::string first_sentence(std::string s) {
    for (char& c : s)
        if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    const size_t b = s.find_first_not_of(' ');
    if (b == std::string::npos) return "";
    const size_t e = s.find_first_of(".!?", b);
    if (e == std::string::npos) return "";
    std::string out = s.substr(b, e - b + 1);
    return out.size() >= 12 ? out : "";
}

std::vector<NewNote> LlmGenerator::generate(const std::string& context, const std::vector<Passage>& passages,
                                            size_t max_items) {
    std::vector<NewNote> out;
    for (const Passage& p : passages) {
        if (out.size() >= max_items) break;
        // The demo cloud model is a base model trained on the speeches themselves, so the
        // "key takeaways" instruction is written as text it would continue: the passage, then
        // the opening of a summary sentence.
        std::string passage = p.text.size() > 1500 ? p.text.substr(0, 1500) : p.text;
        const std::string prompt = "Key takeaways from " + p.title + ".\n\n" + passage + "\n\nIn short, the key point is that";
        GenerateParams gp;
        gp.max_tokens = max_tokens_;
        gp.sampling.temperature = 0;
        gp.stop = {"\n\n"};
        try {
            const Generation g = engine_->generate(prompt, gp);
            std::string s = first_sentence(g.text);
            if (s.empty()) continue;
            out.push_back({"The key point is that " + s, p.doc_id, p.title, method()});
        } catch (const std::exception& e) {
            // a passage the model cannot take (too long for its context): skip it, say why
            std::fprintf(stderr, "tandem-cloud: memory note for %s skipped: %s\n", p.doc_id.c_str(), e.what());
        }
    }
    (void)context;
    return out;
}

ChatWorker::ChatWorker(std::shared_ptr<Engine> engine) : engine_(std::move(engine)) {
    name_ = engine_->model().config().name.empty() ? "tandem-cloud" : engine_->model().config().name;
    thread_ = std::thread([this] { loop(); });
}

ChatWorker::~ChatWorker() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
    }
    engine_->cancel();
    cv_.notify_all();
    thread_.join();
    for (auto& j : queue_) j.on_done("", "cancelled", 0, 0, "server shutting down");
}

void ChatWorker::submit(ChatJob job) {
    std::lock_guard<std::mutex> lk(mu_);
    queue_.push_back(std::move(job));
    cv_.notify_one();
}

void ChatWorker::loop() {
    for (;;) {
        ChatJob job;
        {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
            if (stop_) return;
            job = std::move(queue_.front());
            queue_.pop_front();
        }
        try {
            std::vector<ChatTurn> turns;
            for (auto& [role, content] : job.messages) turns.push_back({role, content});
            const ChatFormat fmt = detect_chat_format(engine_->model().file());
            const std::vector<int32_t> prompt = apply_chat_template(fmt, turns, true, engine_->tokenizer());
            GenerateParams gp;
            gp.max_tokens = job.max_tokens;
            gp.sampling.temperature = (float)job.temperature;
            if (fmt == ChatFormat::Raw) gp.stop = {"\n\n"};  // a base model: one paragraph
            const Generation g = engine_->generate_tokens(prompt, gp, [&](std::string_view p) { return job.on_piece(std::string(p)); });
            const char* finish = g.finish == FinishReason::Length ? "length"
                                 : g.finish == FinishReason::Cancelled ? "cancelled" : "stop";
            job.on_done(g.text, finish, g.usage.prompt_tokens, g.usage.completion_tokens, "");
        } catch (const std::exception& e) {
            job.on_done("", "error", 0, 0, e.what());
        }
    }
}

}  // namespace tandem::cloud
