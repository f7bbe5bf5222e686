// libFuzzer target: any byte string given to the GGUF reader either parses into a file whose
// every tensor lies inside the buffer, or throws GgufError. Nothing else is acceptable.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "tandem/gguf.h"
#include "tandem/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        tandem::GgufFile f = tandem::GgufFile::from_memory(data, size, "fuzz");
        for (const auto& t : f.tensors()) {
            if (f.data_offset() + t.offset + t.n_bytes > size) std::abort();
            // touch the first and last byte of every tensor: ASan catches anything outside
            const uint8_t* p = f.tensor_data(t);
            volatile uint8_t sink = p[0] ^ p[t.n_bytes - 1];
            (void)sink;
        }
        for (const auto& kv : f.metadata()) {
            if (kv.value.type == tandem::GgufType::ARRAY && kv.value.elem_type != tandem::GgufType::STRING) {
                (void)kv.value.as_f32_array();
            }
        }
        tandem::ModelConfig c = tandem::ModelConfig::from_gguf(f);
        try { c.validate("fuzz"); } catch (const tandem::GgufError&) {}
    } catch (const tandem::GgufError&) {
    }
    return 0;
}
