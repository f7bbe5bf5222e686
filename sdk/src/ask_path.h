// The Assistant's ask() path: where an instruction goes (privacy, no cloud, offline, the
// router and its policies), the cloud's streamed answer, and the local model's answer when the
// route says local or the cloud fails. Internal to the SDK.
//
// Local work (the router's model signals, the local answer) runs through LocalRun, which the
// Assistant gives: it stops the running suggestion, takes the locks and picks the context
// (the spare when there is one, so the suggestion's cached prefix survives an ask).
//
// The cloud is a snapshot taken once per ask() (CloudLink): a set_cloud meanwhile sends the
// next ask to the new cloud, and this one finishes on the old.
//
// Thread safety: ask() may run on several threads at once; local work is serialized by
// LocalRun, the router and the budget are thread-safe.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "cloud_link.h"
#include "events.h"
#include "memory_notes.h"
#include "tandem/assistant.h"
#include "tandem/chat_template.h"
#include "tandem/cloud_adapter.h"
#include "tandem/engine.h"
#include "tandem/router.h"
#include "usage_meter.h"

namespace tandem {

// Runs `work` on the local context that ask() uses, with the locks that context needs.
using LocalRun = std::function<void(const std::function<void(Engine&)>& work)>;

class AskPath {
public:
    // Every reference must outlive this object. Loads cfg.router_path (throws RouterError
    // naming the file). local_model: the local model's name, reported with its answers.
    AskPath(const AssistantConfig& cfg, const CloudLink& cloud, ChatFormat format, std::string local_model,
            MemoryNotes& memory, UsageMeter& usage, Emit emit, LocalRun local);

    AskResult ask(std::string_view instruction, std::string_view selection, const AskOptions& opt, const TextCallback& on_piece,
                  bool privacy);

    void set_router_threshold(double t);
    double router_threshold() const { return router_ ? router_->threshold() : -1; }

private:
    RouterSignals signals_for(const std::string& query);
    bool ask_cloud(CloudClient& chat, const std::string& query, std::string_view selection, const AskOptions& opt, const TextCallback& on_piece,
                   AskResult& r, std::string& err);
    void ask_local(const std::string& query, std::string_view selection, const AskOptions& opt, const TextCallback& on_piece,
                   AskResult& r);

    std::string cloud_model_, local_model_;
    const CloudLink& cloud_;
    ChatFormat format_;
    MemoryNotes& memory_;
    UsageMeter& usage_;
    Emit emit_;
    LocalRun local_;
    std::unique_ptr<Router> router_;
    std::unique_ptr<CloudBudget> budget_;
};

}  // namespace tandem
