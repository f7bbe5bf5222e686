// Model-backed memory notes and chat generation for tandem-cloud (see llm.h).
#include "tandem/cloud/llm.h"

#include <strings.h>

#include <cstdio>
#include <random>

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

std::string key_takeaway_prompt(const Passage& p) {
    // The demo cloud model is a base model trained on the speeches themselves, so the
    // "key takeaways" instruction is written as text it would continue: the passage, then
    // the opening of a summary sentence.
    std::string passage = p.text.size() > 1500 ? p.text.substr(0, 1500) : p.text;
    return "Key takeaways from " + p.title + ".\n\n" + passage + "\n\nIn short, the key point is that";
}

std::string key_takeaway_note(const std::string& continuation) {
    std::string s = first_sentence(continuation);
    // An instruction-tuned model may restate the opening it was asked to continue.
    static const std::string kOpening = "the key point is that ";
    if (s.size() > kOpening.size() && strncasecmp(s.c_str(), kOpening.c_str(), kOpening.size()) == 0)
        s = first_sentence(s.substr(kOpening.size()));
    return s.empty() ? s : "The key point is that " + s;
}

std::vector<NewNote> LlmGenerator::generate(const std::string& context, const std::vector<Passage>& passages,
                                            size_t max_items) {
    std::vector<NewNote> out;
    for (const Passage& p : passages) {
        if (out.size() >= max_items) break;
        GenerateParams gp;
        gp.max_tokens = max_tokens_;
        gp.sampling.temperature = 0;
        gp.stop = {"\n\n"};
        try {
            const Generation g = engine_->generate(key_takeaway_prompt(p), gp);
            std::string note = key_takeaway_note(g.text);
            if (note.empty()) continue;
            out.push_back({note, p.doc_id, p.title, method()});
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
            const ChatParams& p = job.params;
            std::vector<ChatTurn> turns;
            for (auto& [role, content] : p.messages) turns.push_back({role, content});
            const ChatFormat fmt = detect_chat_format(engine_->model().file());
            const std::vector<int32_t> prompt = apply_chat_template(fmt, turns, true, engine_->tokenizer());
            GenerateParams gp;
            gp.max_tokens = p.max_tokens;
            gp.sampling.temperature = (float)p.temperature;
            gp.sampling.top_p = (float)p.top_p;
            gp.sampling.frequency_penalty = (float)p.frequency_penalty;
            gp.sampling.presence_penalty = (float)p.presence_penalty;
            if (p.seed) {
                gp.sampling.seed = *p.seed;
            } else {
                std::random_device rd;
                gp.sampling.seed = (uint64_t)rd() << 32 | rd();
            }
            gp.stop = p.stop;
            if (fmt == ChatFormat::Raw) gp.stop.push_back("\n\n");  // a base model: one paragraph
            const Generation g = engine_->generate_tokens(prompt, gp, [&](std::string_view piece) { return job.on_piece(std::string(piece)); });
            const char* finish = g.finish == FinishReason::Length || g.finish == FinishReason::ContextFull ? "length"
                                 : g.finish == FinishReason::Cancelled                                   ? "cancelled"
                                                                                                         : "stop";
            job.on_done(g.text, finish, g.usage.prompt_tokens, g.usage.completion_tokens, "");
        } catch (const std::exception& e) {
            job.on_done("", "error", 0, 0, e.what());
        }
    }
}

}  // namespace tandem::cloud
