// tandem-cloud's language model (with --model): one client_engine Engine shared by the memory
// generator (key-takeaway notes) and the chat completions endpoint. Engine calls are
// serialized by the engine itself, so both may call it from their own threads.
//
// ChatWorker runs chat generations on one thread, in arrival order, so the HTTP I/O thread
// never blocks on the model. Each job streams its text pieces through `on_piece` (return
// false to stop: the client went away) and ends with `on_done`.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "generator.h"
#include "tandem/engine.h"

namespace tandem::cloud {

// Notes written by the model: for each retrieved passage, a prompt holding the passage and
// the start of a key-takeaway sentence; the model's first sentence becomes the note.
class LlmGenerator : public MemoryGenerator {
public:
    explicit LlmGenerator(std::shared_ptr<Engine> engine, int max_tokens = 64) : engine_(std::move(engine)), max_tokens_(max_tokens) {}
    std::vector<NewNote> generate(const std::string& context, const std::vector<Passage>& passages,
                                  size_t max_items) override;
    const char* method() const override { return "llm"; }

private:
    std::shared_ptr<Engine> engine_;
    int max_tokens_;
};

struct ChatJob {
    std::vector<std::pair<std::string, std::string>> messages;  // (role, content)
    int max_tokens = 256;
    double temperature = 0.7;
    std::function<bool(const std::string& piece)> on_piece;
    // text, finish_reason ("stop" | "length" | "cancelled" | "error"), prompt and completion
    // token counts, and an error message when finish_reason is "error".
    std::function<void(const std::string& text, const std::string& finish, int64_t prompt_tokens,
                       int64_t completion_tokens, const std::string& error)> on_done;
};

class ChatWorker {
public:
    explicit ChatWorker(std::shared_ptr<Engine> engine);
    ~ChatWorker();  // finishes the running job, drops queued ones (their on_done gets "cancelled")
    void submit(ChatJob job);
    const std::string& model_name() const { return name_; }

private:
    void loop();
    std::shared_ptr<Engine> engine_;
    std::string name_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<ChatJob> queue_;
    bool stop_ = false;
    std::thread thread_;
};

}  // namespace tandem::cloud
