// tandem::Assistant: what a writing app embeds. One object owns the local model, the memory
// store, the cloud client, the router and the background memory sync.
//
//   suggest(window, cursor)  ghost-text continuation of the document at the cursor, streamed;
//                            memory notes from SQLite in the prompt; KV prefix reuse; a newer
//                            call (or cancel()) stops an older one at once. Never waits for
//                            the cloud.
//   ask(instruction, sel)    routed local or cloud (Hybrid LLM router + policies), streamed;
//                            the result says which model answered and why.
//   memory coordinator       when the text near the cursor has changed enough (word-level
//                            edit distance since the last request), a memory request goes to
//                            the SQLite outbox; the background sync sends it and pulls notes.
//
// Events (on_event) report: the model loaded and on which backend, the GPU not used and why,
// online/offline, memory updated, memory unavailable (bad database: generation goes on without
// memory), errors, memory applied (new notes evaluated in the background: the next suggestion
// uses them), memory reset (the cloud's feed is from another epoch, a reset or restored cloud:
// the local notes were dropped and the feed is read from its start). They run on an internal
// thread or the caller's; keep them short.
//
// A cloud that moves: set_cloud(url, token) points the memory sync and cloud asks at another
// URL at run time (the cloud came back on another port or host); the stored feed cursor
// carries over. set_document(id): the app's stable id of the open document; memory requests
// carry it and retrieval prefers the notes made for it.
//
// The second inference context (AssistantConfig::background_reeval): new memory notes change
// the prompt's head, so the window must be evaluated again. A second context (same weights:
// mapped once on the CPU, a second copy on the GPU; its own KV cache) evaluates the new prompt
// while the writer is idle (no suggest/ask for background_idle_ms), in chunks (about 15 ms of
// work at first, growing to 120 ms, or to 4 times the first chunk on a slow machine, while the
// writer stays idle) that the next suggest() or ask() stops after the one running and a later
// idle moment resumes; when it is done the contexts swap, and the next keystroke gets the new
// notes with its prefix reused. Without it, notes are swapped in at sentence ends at the cost of
// one full re-evaluation inside suggest(). The same context runs ask()'s local work (the
// router's model signals, local answers), so an ask never costs the next suggestion its cached
// prefix; it is made whenever background_reeval is on, with or without a memory store, and on
// the active backend only.
// When it does not fit there, an Error event says so and the Assistant runs as with
// background_reeval = false (ask() then shares the suggestions' context, and the keystroke
// after an ask evaluates its whole prompt again). docs/architecture.md maps the parts.
//
// Thread safety: every method may be called from any thread (not while the Assistant is being
// destroyed). suggest() calls are serialized (a new one cancels the running one first); ask()
// runs its local work under the same lock, on the second context when there is one.
// set_cloud() calls are serialized among themselves and never wait for a suggestion or an ask;
// they wait for the old memory sync's thread to end (at once: its in-flight call is cancelled),
// so set_cloud() must not be called from an event callback (on_event), which may run there.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tandem {

struct AssistantConfig {
    std::string model_path;          // GGUF file of the local model (required)
    std::string backend = "auto";    // auto | cpu | cuda
    int n_threads = 0;               // 0: all cores
    int64_t n_ctx = 2048;            // local context in tokens
    std::string memory_db;           // SQLite file for memory notes; "" = no memory
    std::string cloud_url;           // memory service and chat base URL; "" = no cloud
    std::string cloud_chat_url;      // separate chat endpoint base URL; "" = cloud_url
    std::string cloud_token;         // bearer token (never logged or stored)
    std::string cloud_model = "tandem-cloud";  // "model" field of chat requests
    bool verify_tls = true;
    std::string router_path;         // router JSON; "" = the cloud answers every ask() it can
    double router_threshold = -1;    // >= 0 overrides the file's threshold (the quality/cost knob)
    bool privacy_mode = false;       // never contact the cloud
    int64_t cloud_calls_per_hour = -1;   // router budget; < 0 unlimited
    int64_t cloud_tokens_per_day = -1;
    // Suggestions (suggest()): the ghost text ends where the sentence it completes ends
    // (suggestion_end; the rules are in tandem/suggest_text.h), so suggestion_tokens is a cap.
    // Greedy by default, so the same text gets the same suggestion; temperature > 0 samples
    // with top_k / top_p and the seed. suggestion_stop: strings that end a suggestion before
    // them. Values out of range make create() throw std::invalid_argument naming the field.
    int suggestion_tokens = 48;      // the most tokens a suggestion takes, >= 1
    std::string suggestion_end = "sentence";  // sentence | line | paragraph
    bool suggestion_complete_words = true;    // the word at the cursor is completed, not glued to
    int suggestion_no_repeat_ngram = 5;       // no repeat of this many tokens of the last two sentences; 0: off
    double suggestion_temperature = 0;        // 0: greedy; else > 0
    int suggestion_top_k = 40;                // <= 0: off
    double suggestion_top_p = 0.95;           // in (0, 1]; 1: off
    uint64_t suggestion_seed = 0x5EED;
    std::vector<std::string> suggestion_stop;
    int memory_budget_tokens = 192;  // memory notes in the suggestion prompt
    int memory_max_items = 4;
    int memory_edit_threshold = 12;  // words changed in the window before a new memory request
    int memory_window_words = 300;   // the window's tail that requests and edits are measured on
    bool background_reeval = true;   // the second inference context (see the top of this file)
    int background_idle_ms = 250;    // idle time before the background evaluates new notes

    // Reads a JSON object with the same field names. Throws std::runtime_error naming the file
    // and field for unknown fields or wrong types.
    static AssistantConfig from_json_file(const std::string& path);
};

// The cloud client rejected the cloud settings (cloud_url, cloud_chat_url: http:// or https://
// without spaces or control characters; cloud_token: printable ASCII without spaces).
class CloudConfigError : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

enum class EventKind {
    ModelLoaded, GpuNotUsed, Online, Offline, MemoryUpdated, MemoryUnavailable, MemoryRequested, Error, MemoryApplied,
    MemoryReset,  // the cloud's feed started over (another epoch): the local notes were replaced
};
const char* event_kind_name(EventKind k);

struct AssistantEvent {
    EventKind kind;
    std::string message;
};
using EventCallback = std::function<void(const AssistantEvent&)>;

// Receives streamed text; return false to stop.
using TextCallback = std::function<bool(std::string_view piece)>;

struct MemoryNote {
    std::string id, text, doc_id, title;
};

// The source passage a memory note was made from (Assistant::note_source).
struct NoteSource {
    std::string doc_id, title;
    std::string passage;           // the passage of the source document, one sentence a line
    int64_t index = 0, count = 0;  // its place among the document's passages
};

struct GenerationStats {
    int64_t prompt_tokens = 0, reused_tokens = 0, completion_tokens = 0;
    double ttft_ms = 0, tokens_per_s = 0;
    double decode_ms = 0;  // from the first generated token to the end
};

struct SuggestResult {
    std::string text;
    bool cancelled = false;
    std::vector<MemoryNote> memory;  // notes that were in the prompt
    GenerationStats stats;
};

// The local model's progress through a prompt: called after each forward pass with the prompt
// tokens evaluated or reused so far and the prompt's length (the same type as tandem/engine.h's
// PromptProgress). Return false to stop the call (it ends cancelled).
using PromptProgress = std::function<bool(int64_t cached, int64_t total)>;

struct AskOptions {
    bool private_query = false;  // never sent to the cloud
    int max_tokens = 256;
    PromptProgress on_prompt_progress;  // local answers only; empty: none
};

struct AskResult {
    std::string text;
    std::string answered_by;     // "local" or "cloud"
    std::string model;           // the model that answered: the cloud's reported model name
                                 // (else AssistantConfig::cloud_model), or the local model's name
    std::string reason;          // why: router score vs threshold, or the policy that overrode it,
                                 // or the cloud error that made the local model answer instead
    double router_score = -1;    // -1: no router
    double router_threshold = -1;
    bool cancelled = false;
    GenerationStats stats;
};

struct UsageTotals {
    int64_t suggestions = 0, local_asks = 0, cloud_asks = 0;
    int64_t prompt_tokens = 0, completion_tokens = 0, cloud_prompt_tokens = 0, cloud_completion_tokens = 0;
    double last_ttft_ms = 0, last_tokens_per_s = 0;
    int64_t memory_notes = 0;    // notes stored
    bool online = false;
    std::string backend;         // "cpu" or "cuda"
    std::string model;           // the local model's name (GGUF general.name, else the file name)
    bool model_is_chat = false;  // the local model has a chat template (instruction-tuned); false:
                                 // a base model, which continues text and does not follow instructions
    // Background re-evaluation (AssistantConfig::background_reeval): evaluations started
    // (a resumed one counts again), runs completed, runs stopped by a keystroke (resumed
    // later), tokens evaluated, and the last completed run's evaluation time (its chunks only,
    // not the idle gaps between them).
    int64_t background_starts = 0, background_runs = 0, background_cancels = 0, background_tokens = 0;
    double last_background_ms = 0;

    // One JSON object with every field above under its own name (the C ABI and the web app
    // report usage in this form).
    std::string to_json() const;
};

class Assistant {
public:
    // Loads everything; throws std::runtime_error (or a library error: GgufError, ModelError,
    // TokenizerError, RouterError, GpuError) with the file/field and reason,
    // std::invalid_argument for a bad setting (CloudConfigError for the cloud's). A broken
    // memory database does not throw: an event says memory is unavailable.
    static std::unique_ptr<Assistant> create(const AssistantConfig& config, EventCallback on_event = {});
    virtual ~Assistant() = default;

    // Continues `document` at byte offset `cursor` (text after the cursor is ignored).
    virtual SuggestResult suggest(std::string_view document, size_t cursor, const TextCallback& on_piece = {}) = 0;
    // Stops the running suggest() (if any) within one token, or within one forward pass of its
    // prompt (tandem/engine.h) while the prompt is evaluated.
    virtual void cancel() = 0;
    virtual AskResult ask(std::string_view instruction, std::string_view selection, const AskOptions& options = {},
                          const TextCallback& on_piece = {}) = 0;

    virtual void set_router_threshold(double t) = 0;  // the quality/cost knob, in [0, 1]
    virtual double router_threshold() const = 0;
    virtual void set_privacy_mode(bool on) = 0;
    virtual std::vector<MemoryNote> memory_notes(size_t limit = 20) = 0;  // most relevant to the last window
    // The passage `note` was made from, asked of the cloud (GET /v1/sources, docs/protocol.md);
    // blocks for up to the cloud's request timeout. Throws std::runtime_error saying why not:
    // no cloud configured, privacy mode, the cloud unreachable, or no such source there.
    virtual NoteSource note_source(const MemoryNote& note) = 0;
    virtual UsageTotals usage() const = 0;

    // Points the memory sync and cloud asks at `url` with bearer `token` from now on ("" = no
    // cloud); AssistantConfig::cloud_chat_url, when set, stays the chat endpoint. The sync's
    // in-flight call is cancelled and it goes on against the new URL from the stored cursor:
    // the same cloud moved goes on where it was; another cloud's feed (another epoch) starts
    // over, with a MemoryReset event, and its notes replace the old. An ask() already talking
    // to the old cloud finishes there. In privacy mode nothing is sent until it ends. Throws
    // CloudConfigError (a std::invalid_argument) for a malformed URL or token; nothing
    // changes then.
    virtual void set_cloud(const std::string& url, const std::string& token) = 0;
    virtual std::string cloud_url() const = 0;  // the URL in use; "" when there is no cloud
    // The app's stable id of the document being edited (e.g. a UUID stored with the file;
    // "" = none): memory requests carry it (the cloud can forget a document's notes by it) and
    // the suggestions' notes and memory_notes() prefer the notes made for it. Throws
    // std::invalid_argument when it is over 256 bytes or has control characters.
    virtual void set_document(const std::string& document_id) = 0;
};

}  // namespace tandem
