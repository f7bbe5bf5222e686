// The head-bits file: which KV heads of a model the Turbo cache keeps at 2 bits, chosen on
// calibration text (`tandem calibrate-heads`) and stored next to the model as
// MODEL + ".heads.json". The backend factory (tandem/backend.h) loads it when turbo KV is on.
//
//   key                  type                  meaning
//   format               "tandem-turbo-heads"  fixed
//   version              1
//   model.size           integer               the GGUF file's size in bytes
//   model.hash           16 hex digits         turbo_model_signature: FNV-1a 64 of the file's
//                                              first and last MiB (header, tensor table, the
//                                              last weights): cheap, and tells models apart
//   frac_2bit            number in [0, 1]      fraction of each layer's KV heads at 2 bits
//   calibration_tokens   integer               tokens the scores were measured on
//   n_layer, n_head_kv   integers              must match the model
//   bits                 [[4|2 x n_head_kv] x n_layer]
//   scores               [[number x n_head_kv] x n_layer]  turbo_head_priority per head
#pragma once
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "tandem/context.h"

namespace tandem {

// A malformed file, one for another model, or an I/O failure. The message names the file
// and the field ("m.gguf.heads.json: bits[3] has 2 entries, the model has 4 KV heads").
class TurboHeadsError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct TurboHeads {
    uint64_t model_size = 0;
    std::string model_hash;                       // 16 lowercase hex digits
    float frac_2bit = 0.0f;
    int64_t calibration_tokens = 0;
    std::vector<std::vector<uint8_t>> bits;       // (n_layer, n_head_kv) 4 or 2
    std::vector<std::vector<double>> scores;      // (n_layer, n_head_kv)
};

// The signature of a model file (see the table). Throws TurboHeadsError when it cannot be read.
std::string turbo_model_signature(const std::string& model_path, uint64_t* size_out);
// MODEL + ".heads.json".
std::string turbo_heads_path(const std::string& model_path);

// Ranks the model's KV heads on `tokens` (calibrate_turbo_head_bits) and fills every field.
TurboHeads calibrate_turbo_heads(std::shared_ptr<const Model> model, const std::vector<int32_t>& tokens, float frac_2bit);

// Writes / reads the JSON file. Both throw TurboHeadsError naming the file (and the field).
void write_turbo_heads(const std::string& path, const TurboHeads& h);
TurboHeads read_turbo_heads(const std::string& path);
// Throws TurboHeadsError naming `path` and the field when h was made for another model
// (size, hash, n_layer, n_head_kv).
void check_turbo_heads(const TurboHeads& h, const Model& m, const std::string& path);

// When cp.turbo_kv is on, cp.turbo_head_bits is empty and turbo_heads_path(model) exists:
// reads and checks it, sets cp.turbo_head_bits and cp.turbo.frac_2bit, and returns the path.
// Returns "" when nothing was loaded. Throws TurboHeadsError for a malformed or foreign file.
std::string apply_turbo_heads_file(const Model& m, ContextParams& cp);

}  // namespace tandem
