// GGUF v3 writer: used by tests, benchmarks (synthetic models) and the quantize tool.
#include <cstring>
#include <fstream>

#include "tandem/gguf.h"

namespace tandem {

void GgufWriter::set(const std::string& key, GgufValue value) {
    for (auto& kv : kvs_)
        if (kv.key == key) { kv.value = std::move(value); return; }
    kvs_.push_back({key, std::move(value)});
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> ne, const void* data,
                            size_t n_bytes) {
    const TypeTraits* tt = type_traits(static_cast<uint32_t>(type));
    if (!tt) throw GgufError("gguf writer: tensor '" + name + "' has an unknown type");
    if (ne.empty() || ne.size() > 4) throw GgufError("gguf writer: tensor '" + name + "' needs 1 to 4 dims");
    uint64_t n = 1;
    for (int64_t d : ne) {
        if (d <= 0) throw GgufError("gguf writer: tensor '" + name + "' has a non-positive dimension");
        n *= (uint64_t)d;
    }
    if (ne[0] % tt->block_size != 0)
        throw GgufError("gguf writer: tensor '" + name + "' row is not a multiple of the block size");
    const uint64_t expect = n / (uint64_t)tt->block_size * tt->type_size;
    if (expect != n_bytes)
        throw GgufError("gguf writer: tensor '" + name + "' has " + std::to_string(n_bytes) + " bytes, expected " +
                        std::to_string(expect));
    PendingTensor t;
    t.info.name = name;
    t.info.ne = std::move(ne);
    t.info.type = type;
    t.info.n_elements = n;
    t.info.n_bytes = n_bytes;
    t.data.assign((const uint8_t*)data, (const uint8_t*)data + n_bytes);
    tensors_.push_back(std::move(t));
}

void GgufWriter::add_tensor_from_f32(const std::string& name, GgmlType type, std::vector<int64_t> ne,
                                     const float* values) {
    const TypeTraits* tt = type_traits(static_cast<uint32_t>(type));
    if (!tt || !tt->from_float_ref) throw GgufError("gguf writer: cannot quantize tensor '" + name + "' to this type");
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    if (ne.empty() || ne[0] % tt->block_size != 0)
        throw GgufError("gguf writer: tensor '" + name + "' row is not a multiple of the block size");
    std::vector<uint8_t> buf((size_t)(n / tt->block_size) * tt->type_size);
    tt->from_float_ref(values, buf.data(), n);
    add_tensor(name, type, std::move(ne), buf.data(), buf.size());
}

uint64_t GgufWriter::alignment() const {
    for (const auto& kv : kvs_)
        if (kv.key == "general.alignment") return (uint64_t)kv.value.as_int();
    return 32;
}

// ---- serialization ---------------------------------------------------------------------------

static void put_bytes(std::string& out, const void* p, size_t n) { out.append((const char*)p, n); }
template <typename T> static void put(std::string& out, T v) { put_bytes(out, &v, sizeof v); }
static void put_string(std::string& out, const std::string& s) {
    put<uint64_t>(out, s.size());
    out += s;
}

static void put_value(std::string& out, const GgufValue& v) {
    switch (v.type) {
        case GgufType::UINT8: case GgufType::BOOL: put<uint8_t>(out, (uint8_t)v.u); break;
        case GgufType::INT8: put<int8_t>(out, (int8_t)v.i); break;
        case GgufType::UINT16: put<uint16_t>(out, (uint16_t)v.u); break;
        case GgufType::INT16: put<int16_t>(out, (int16_t)v.i); break;
        case GgufType::UINT32: put<uint32_t>(out, (uint32_t)v.u); break;
        case GgufType::INT32: put<int32_t>(out, (int32_t)v.i); break;
        case GgufType::UINT64: put<uint64_t>(out, v.u); break;
        case GgufType::INT64: put<int64_t>(out, v.i); break;
        case GgufType::FLOAT32: put<float>(out, (float)v.f); break;
        case GgufType::FLOAT64: put<double>(out, v.f); break;
        case GgufType::STRING: put_string(out, v.str); break;
        case GgufType::ARRAY:
            put<uint32_t>(out, static_cast<uint32_t>(v.elem_type));
            put<uint64_t>(out, v.n_elems);
            if (v.elem_type == GgufType::STRING)
                for (const auto& s : v.strs) put_string(out, s);
            else
                out.append((const char*)v.elems.data(), v.elems.size());
            break;
    }
}

std::string GgufWriter::to_bytes() const {
    const uint64_t align = alignment();
    std::string out;
    put_bytes(out, "GGUF", 4);
    put<uint32_t>(out, 3);
    put<uint64_t>(out, tensors_.size());
    put<uint64_t>(out, kvs_.size());
    for (const auto& kv : kvs_) {
        put_string(out, kv.key);
        put<uint32_t>(out, static_cast<uint32_t>(kv.value.type));
        put_value(out, kv.value);
    }
    uint64_t offset = 0;
    for (const auto& t : tensors_) {
        put_string(out, t.info.name);
        put<uint32_t>(out, (uint32_t)t.info.ne.size());
        for (int64_t d : t.info.ne) put<uint64_t>(out, (uint64_t)d);
        put<uint32_t>(out, static_cast<uint32_t>(t.info.type));
        put<uint64_t>(out, offset);
        offset += (t.info.n_bytes + align - 1) / align * align;
    }
    out.resize((out.size() + align - 1) / align * align, '\0');
    for (const auto& t : tensors_) {
        put_bytes(out, t.data.data(), t.data.size());
        out.resize((out.size() + align - 1) / align * align, '\0');
    }
    return out;
}

void GgufWriter::write(const std::string& path) const {
    const std::string bytes = to_bytes();
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    if (!f) throw GgufError(path + ": cannot open for writing");
    f.write(bytes.data(), (std::streamsize)bytes.size());
    f.close();
    if (!f) throw GgufError(path + ": write failed");
}

}  // namespace tandem
