// The router-file fields every trained kind shares: label_mode, t, training and features
// (docs/router.md has the schema). Internal.
#pragma once
#include <string>

#include "json_fields.h"
#include "tandem/router.h"

namespace tandem::detail {

// Writes label_mode, t, training and features into out.
void trained_to_json(const FeatureConfig& cfg, const TrainingInfo& training, json& out);
// Reads them back; throws RouterError "FILE: field 'F': why".
void trained_from_json(const json& j, const std::string& file, FeatureConfig& cfg, TrainingInfo& training);

}  // namespace tandem::detail
