// tandem-cloud's language model (with --model): one client_engine Engine shared by the memory
// generator (key-takeaway notes) and the chat completions endpoint. Engine calls are
// serialized by the engine itself, so both may call it from their own threads.
// ChatBackend is what the chat endpoint talks to: this built-in model, or an upstream
// OpenAI-compatible server (--llm-url, upstream_llm.h).
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
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tandem/cloud/generator.h"
#include "tandem/engine.h"

namespace tandem::cloud {

// The key-takeaway prompt for one passage: its title and text (at most 1500 bytes) and the
// opening of a summary sentence ("In short, the key point is that"), for the model to continue.
std::string key_takeaway_prompt(const Passage& p);
// The note made of the model's continuation of key_takeaway_prompt: "The key point is that " +
// its first complete sentence; "" when it has none of at least 12 bytes.
std::string key_takeaway_note(const std::string& continuation);

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

// One chat generation as the OpenAI API describes it (openai_api.h parses requests into it).
struct ChatParams {
    std::vector<std::pair<std::string, std::string>> messages;  // (role, content); role system|user|assistant
    int max_tokens = 256;
    double temperature = 1.0;       // 0: greedy
    double top_p = 1.0;             // nucleus sampling; 1: off
    double frequency_penalty = 0, presence_penalty = 0;
    std::optional<uint64_t> seed;   // the same seed (and request) gives the same text; none: random
    std::vector<std::string> stop;  // generation ends before the first of these; not in the text
};

struct ChatJob {
    ChatParams params;
    std::function<bool(const std::string& piece)> on_piece;
    // text, finish_reason ("stop" | "length" | "cancelled" | "error" | "upstream_error": the
    // upstream LLM server failed, answered 502), prompt and completion token counts, and an
    // error message when finish_reason is "error" or "upstream_error".
    std::function<void(const std::string& text, const std::string& finish, int64_t prompt_tokens,
                       int64_t completion_tokens, const std::string& error)> on_done;
};

// Runs chat jobs. on_done is called exactly once per job, from any thread.
class ChatBackend {
public:
    virtual ~ChatBackend() = default;
    virtual void submit(ChatJob job) = 0;
    virtual const std::string& model_name() const = 0;  // the "model" of the answers
};

class ChatWorker : public ChatBackend {
public:
    explicit ChatWorker(std::shared_ptr<Engine> engine);
    ~ChatWorker() override;  // finishes the running job, drops queued ones (their on_done gets "cancelled")
    void submit(ChatJob job) override;
    const std::string& model_name() const override { return name_; }

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
