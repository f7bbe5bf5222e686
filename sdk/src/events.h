// How the Assistant's parts report events: the facade hands each part this function, which
// calls the app's EventCallback (tandem/assistant.h). Internal to the SDK.
#pragma once
#include <functional>
#include <string>

#include "tandem/assistant.h"

namespace tandem {

using Emit = std::function<void(EventKind kind, const std::string& message)>;

}  // namespace tandem
