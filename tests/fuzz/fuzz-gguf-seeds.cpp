// Writes a small seed corpus for fuzz-gguf: each input GGUF file re-written with its string
// arrays cut to 64 entries and each tensor cut to its first row, so seeds stay a few KiB
// while keeping the real files' keys, types and layouts.
// usage: fuzz-gguf-seeds OUT_DIR FILE.gguf...
#include <cstdio>
#include <string>

#include "tandem/gguf.h"

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: fuzz-gguf-seeds OUT_DIR FILE.gguf...\n");
        return 2;
    }
    int written = 0;
    for (int i = 2; i < argc; i++) {
        try {
            const tandem::GgufFile f = tandem::GgufFile::open(argv[i]);
            tandem::GgufWriter w;
            for (const auto& kv : f.metadata()) {
                tandem::GgufValue v = kv.value;
                if (v.type == tandem::GgufType::ARRAY && v.n_elems > 64) {
                    v.n_elems = 64;
                    if (v.elem_type == tandem::GgufType::STRING) v.strs.resize(64);
                    else v.elems.resize(64 * tandem::gguf_type_size(v.elem_type));
                }
                w.set(kv.key, v);
            }
            for (const auto& t : f.tensors()) {
                const size_t row = tandem::row_size(t.type, t.ne[0]);
                w.add_tensor(t.name, t.type, {t.ne[0]}, f.tensor_data(t), row);
            }
            std::string name = argv[i];
            name = name.substr(name.find_last_of('/') + 1);
            w.write(std::string(argv[1]) + "/" + name);
            written++;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "skipped %s: %s\n", argv[i], e.what());
        }
    }
    std::printf("wrote %d seeds to %s\n", written, argv[1]);
    return written > 0 ? 0 : 1;
}
