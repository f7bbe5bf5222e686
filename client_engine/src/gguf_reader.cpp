// GGUF reader: parses and validates a whole file before anything else sees it.
// The weights are never copied: tensor_data() points into the read-only mmap.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "tandem/gguf.h"
#include "tandem/mapping_faults.h"

namespace tandem {

// ---- limits that keep hostile files from making us allocate or loop forever -------------

static constexpr uint64_t kMaxTensors = 1u << 20;
static constexpr uint64_t kMaxKvs = 1u << 20;
static constexpr uint32_t kMaxDims = 4;          // ggml's GGML_MAX_DIMS
static constexpr uint64_t kMaxStringLen = 1u << 30;

// ---- GgufValue -----------------------------------------------------------------------------

const char* gguf_type_name(GgufType t) {
    static const char* names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                  "string", "array", "u64", "i64", "f64"};
    const uint32_t i = static_cast<uint32_t>(t);
    return i < sizeof(names) / sizeof(names[0]) ? names[i] : "unknown";
}

size_t gguf_type_size(GgufType t) {
    switch (t) {
        case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
        case GgufType::UINT16: case GgufType::INT16: return 2;
        case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
        case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
        default: return 0;
    }
}

static bool is_signed(GgufType t) {
    return t == GgufType::INT8 || t == GgufType::INT16 || t == GgufType::INT32 || t == GgufType::INT64;
}

bool GgufValue::is_integer() const {
    switch (type) {
        case GgufType::UINT8: case GgufType::INT8: case GgufType::UINT16: case GgufType::INT16:
        case GgufType::UINT32: case GgufType::INT32: case GgufType::UINT64: case GgufType::INT64:
        case GgufType::BOOL: return true;
        default: return false;
    }
}

int64_t GgufValue::as_int() const {
    if (!is_integer()) throw GgufError(std::string("expected an integer, found ") + gguf_type_name(type));
    return is_signed(type) ? i : (int64_t)u;
}

double GgufValue::as_float() const {
    if (is_float()) return f;
    if (is_integer()) return (double)as_int();
    throw GgufError(std::string("expected a number, found ") + gguf_type_name(type));
}

// Reads element k of a numeric array as double / int64 from its raw little-endian bytes.
template <typename T> static T load(const uint8_t* p) { T v; std::memcpy(&v, p, sizeof(T)); return v; }

static double elem_as_double(GgufType t, const uint8_t* p) {
    switch (t) {
        case GgufType::UINT8: case GgufType::BOOL: return *p;
        case GgufType::INT8: return (int8_t)*p;
        case GgufType::UINT16: return load<uint16_t>(p);
        case GgufType::INT16: return load<int16_t>(p);
        case GgufType::UINT32: return load<uint32_t>(p);
        case GgufType::INT32: return load<int32_t>(p);
        case GgufType::FLOAT32: return load<float>(p);
        case GgufType::UINT64: return (double)load<uint64_t>(p);
        case GgufType::INT64: return (double)load<int64_t>(p);
        case GgufType::FLOAT64: return load<double>(p);
        default: return 0;
    }
}

static int64_t elem_as_int(GgufType t, const uint8_t* p) {
    switch (t) {
        case GgufType::UINT64: return (int64_t)load<uint64_t>(p);
        case GgufType::INT64: return load<int64_t>(p);
        case GgufType::FLOAT32: case GgufType::FLOAT64:
            throw GgufError("expected an integer array, found a float array");
        default: return (int64_t)elem_as_double(t, p);
    }
}

std::vector<float> GgufValue::as_f32_array() const {
    if (type != GgufType::ARRAY || elem_type == GgufType::STRING)
        throw GgufError("expected an array of numbers");
    const size_t es = gguf_type_size(elem_type);
    std::vector<float> out(n_elems);
    for (uint64_t k = 0; k < n_elems; k++) out[k] = (float)elem_as_double(elem_type, &elems[k * es]);
    return out;
}

std::vector<int64_t> GgufValue::as_i64_array() const {
    if (type != GgufType::ARRAY || elem_type == GgufType::STRING)
        throw GgufError("expected an array of integers");
    const size_t es = gguf_type_size(elem_type);
    std::vector<int64_t> out(n_elems);
    for (uint64_t k = 0; k < n_elems; k++) out[k] = elem_as_int(elem_type, &elems[k * es]);
    return out;
}

GgufValue GgufValue::of_u32(uint32_t v) { GgufValue x; x.type = GgufType::UINT32; x.u = v; return x; }
GgufValue GgufValue::of_i32(int32_t v) { GgufValue x; x.type = GgufType::INT32; x.i = v; return x; }
GgufValue GgufValue::of_u64(uint64_t v) { GgufValue x; x.type = GgufType::UINT64; x.u = v; return x; }
GgufValue GgufValue::of_f32(float v) { GgufValue x; x.type = GgufType::FLOAT32; x.f = v; return x; }
GgufValue GgufValue::of_bool(bool v) { GgufValue x; x.type = GgufType::BOOL; x.u = v; return x; }
GgufValue GgufValue::of_string(std::string v) {
    GgufValue x; x.type = GgufType::STRING; x.str = std::move(v); return x;
}
GgufValue GgufValue::of_strings(std::vector<std::string> v) {
    GgufValue x; x.type = GgufType::ARRAY; x.elem_type = GgufType::STRING; x.n_elems = v.size();
    x.strs = std::move(v); return x;
}
GgufValue GgufValue::of_f32s(const std::vector<float>& v) {
    GgufValue x; x.type = GgufType::ARRAY; x.elem_type = GgufType::FLOAT32; x.n_elems = v.size();
    x.elems.resize(v.size() * 4); if (!v.empty()) std::memcpy(x.elems.data(), v.data(), v.size() * 4);
    return x;
}
GgufValue GgufValue::of_i32s(const std::vector<int32_t>& v) {
    GgufValue x; x.type = GgufType::ARRAY; x.elem_type = GgufType::INT32; x.n_elems = v.size();
    x.elems.resize(v.size() * 4); if (!v.empty()) std::memcpy(x.elems.data(), v.data(), v.size() * 4);
    return x;
}

// ---- the byte cursor -------------------------------------------------------------------------

// Reads little-endian fields from [base, base+size); every read is bounds-checked and
// failures name the file and what was being read.
class Cursor {
public:
    Cursor(const uint8_t* base, uint64_t size, const std::string& file, bool u32_counts)
        : base_(base), size_(size), file_(file), u32_counts_(u32_counts) {}

    uint64_t pos() const { return pos_; }
    uint64_t remaining() const { return size_ - pos_; }

    [[noreturn]] void fail(const std::string& what) const {
        throw GgufError(file_ + ": " + what + " (at byte " + std::to_string(pos_) + ")");
    }
    const uint8_t* take(uint64_t n, const char* what) {
        if (n > remaining()) fail(std::string("file is truncated while reading ") + what);
        const uint8_t* p = base_ + pos_;
        pos_ += n;
        return p;
    }
    template <typename T> T read(const char* what) { return load<T>(take(sizeof(T), what)); }
    // Counts and lengths: u32 in GGUF v1, u64 from v2 on.
    uint64_t read_count(const char* what) {
        return u32_counts_ ? read<uint32_t>(what) : read<uint64_t>(what);
    }
    std::string read_string(const char* what) {
        const uint64_t len = read_count(what);
        if (len > kMaxStringLen || len > remaining())
            fail(std::string(what) + " has length " + std::to_string(len) + ", beyond the end of the file");
        const uint8_t* p = take(len, what);
        return std::string((const char*)p, (size_t)len);
    }

private:
    const uint8_t* base_;
    uint64_t size_;
    uint64_t pos_ = 0;
    const std::string& file_;
    bool u32_counts_;
};

// Strict UTF-8 check (no overlongs, no surrogates, max U+10FFFF).
static bool valid_utf8(const std::string& s) {
    const auto* p = (const unsigned char*)s.data();
    size_t i = 0, n = s.size();
    while (i < n) {
        const unsigned c = p[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
        else return false;
        if (i + len > n) return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return false;
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

static void read_value(Cursor& c, GgufType type, GgufValue& v, const std::string& key) {
    v.type = type;
    switch (type) {
        case GgufType::UINT8: v.u = c.read<uint8_t>(key.c_str()); break;
        case GgufType::INT8: v.i = c.read<int8_t>(key.c_str()); break;
        case GgufType::UINT16: v.u = c.read<uint16_t>(key.c_str()); break;
        case GgufType::INT16: v.i = c.read<int16_t>(key.c_str()); break;
        case GgufType::UINT32: v.u = c.read<uint32_t>(key.c_str()); break;
        case GgufType::INT32: v.i = c.read<int32_t>(key.c_str()); break;
        case GgufType::UINT64: v.u = c.read<uint64_t>(key.c_str()); break;
        case GgufType::INT64: v.i = c.read<int64_t>(key.c_str()); break;
        case GgufType::FLOAT32: v.f = c.read<float>(key.c_str()); break;
        case GgufType::FLOAT64: v.f = c.read<double>(key.c_str()); break;
        case GgufType::BOOL: {
            const uint8_t b = c.read<uint8_t>(key.c_str());
            if (b > 1) c.fail("key '" + key + "': bool value " + std::to_string(b) + " is not 0 or 1");
            v.u = b;
            break;
        }
        case GgufType::STRING: v.str = c.read_string(key.c_str()); break;
        case GgufType::ARRAY: {
            const uint32_t et = c.read<uint32_t>(key.c_str());
            if (et > static_cast<uint32_t>(GgufType::FLOAT64))
                c.fail("key '" + key + "': unknown array element type " + std::to_string(et));
            v.elem_type = static_cast<GgufType>(et);
            if (v.elem_type == GgufType::ARRAY) c.fail("key '" + key + "': nested arrays are not supported");
            const uint64_t n = c.read_count(key.c_str());
            v.n_elems = n;
            if (v.elem_type == GgufType::STRING) {
                // each string takes at least its length field: bound n before reserving
                const uint64_t min_each = 4;
                if (n > c.remaining() / min_each)
                    c.fail("key '" + key + "': array of " + std::to_string(n) + " strings does not fit in the file");
                v.strs.reserve((size_t)n);
                for (uint64_t k = 0; k < n; k++) v.strs.push_back(c.read_string(key.c_str()));
            } else {
                const size_t es = gguf_type_size(v.elem_type);
                if (n > c.remaining() / es)
                    c.fail("key '" + key + "': array of " + std::to_string(n) + " elements does not fit in the file");
                const uint8_t* p = c.take(n * es, key.c_str());
                v.elems.assign(p, p + n * es);
                if (v.elem_type == GgufType::BOOL)
                    for (uint8_t b : v.elems)
                        if (b > 1) c.fail("key '" + key + "': bool array element is not 0 or 1");
            }
            break;
        }
        default: c.fail("key '" + key + "': unknown value type " + std::to_string((uint32_t)type));
    }
}

// ---- GgufFile --------------------------------------------------------------------------------

GgufFile GgufFile::open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw GgufError(path + ": cannot open: " + std::strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        const int e = errno;
        ::close(fd);
        throw GgufError(path + ": cannot stat: " + std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw GgufError(path + ": not a regular file");
    }
    GgufFile f;
    f.path_ = path;
    f.size_ = (uint64_t)st.st_size;
    if (f.size_ > 0) {
        void* m = mmap(nullptr, (size_t)f.size_, PROT_READ, MAP_SHARED, fd, 0);
        const int e = errno;
        ::close(fd);
        if (m == MAP_FAILED) throw GgufError(path + ": cannot mmap: " + std::strerror(e));
        f.mapping_ = m;
        f.base_ = (const uint8_t*)m;
        register_mapping(m, (size_t)f.size_, path);
    } else {
        ::close(fd);
    }
    f.parse();  // on throw, ~GgufFile unmaps
    return f;
}

void GgufFile::release_pages(const void* p, size_t n) const {
    if (!mapping_ || !p) return;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t lo = std::max((uintptr_t)p, (uintptr_t)base_), hi = std::min((uintptr_t)p + n, (uintptr_t)base_ + size_);
    const uintptr_t a = (lo + page - 1) / page * page, b = hi / page * page;
    if (a < b) madvise((void*)a, b - a, MADV_DONTNEED);
}

GgufFile GgufFile::from_memory(const void* data, size_t size, const std::string& name) {
    GgufFile f;
    f.path_ = name;
    f.base_ = (const uint8_t*)data;
    f.size_ = size;
    f.parse();
    return f;
}

GgufFile::GgufFile(GgufFile&& o) noexcept { *this = std::move(o); }

GgufFile& GgufFile::operator=(GgufFile&& o) noexcept {
    if (this != &o) {
        if (mapping_) unregister_mapping(mapping_), munmap(mapping_, (size_t)size_);
        path_ = std::move(o.path_);
        base_ = o.base_;
        size_ = o.size_;
        mapping_ = o.mapping_;
        version_ = o.version_;
        alignment_ = o.alignment_;
        data_offset_ = o.data_offset_;
        kvs_ = std::move(o.kvs_);
        tensors_ = std::move(o.tensors_);
        o.mapping_ = nullptr;
        o.base_ = nullptr;
        o.size_ = 0;
    }
    return *this;
}

GgufFile::~GgufFile() {
    if (mapping_) unregister_mapping(mapping_), munmap(mapping_, (size_t)size_);
}

void GgufFile::parse() {
    if (size_ < 8) throw GgufError(path_ + ": file too small to be GGUF (" + std::to_string(size_) + " bytes)");
    if (std::memcmp(base_, "GGUF", 4) != 0) throw GgufError(path_ + ": not a GGUF file (bad magic)");
    version_ = load<uint32_t>(base_ + 4);
    if (version_ < 1 || version_ > 3)
        throw GgufError(path_ + ": unsupported GGUF version " + std::to_string(version_));
    Cursor c(base_, size_, path_, version_ == 1);
    c.take(8, "header");
    const uint64_t n_tensors = c.read_count("tensor count");
    const uint64_t n_kv = c.read_count("metadata count");
    if (n_tensors > kMaxTensors) c.fail("absurd tensor count " + std::to_string(n_tensors));
    if (n_kv > kMaxKvs) c.fail("absurd metadata count " + std::to_string(n_kv));

    std::unordered_set<std::string> seen_keys;
    kvs_.reserve((size_t)std::min<uint64_t>(n_kv, c.remaining() / 12));
    for (uint64_t k = 0; k < n_kv; k++) {
        GgufKv kv;
        kv.key = c.read_string("metadata key");
        if (kv.key.empty()) c.fail("metadata key #" + std::to_string(k) + " is empty");
        if (!valid_utf8(kv.key)) c.fail("metadata key #" + std::to_string(k) + " is not valid UTF-8");
        if (!seen_keys.insert(kv.key).second) c.fail("duplicate metadata key '" + kv.key + "'");
        const uint32_t t = c.read<uint32_t>(kv.key.c_str());
        if (t > static_cast<uint32_t>(GgufType::FLOAT64))
            c.fail("key '" + kv.key + "': unknown value type " + std::to_string(t));
        read_value(c, static_cast<GgufType>(t), kv.value, kv.key);
        kvs_.push_back(std::move(kv));
    }

    if (const GgufValue* a = find("general.alignment")) {
        if (!a->is_integer() || a->type == GgufType::BOOL) c.fail("general.alignment is not an integer");
        const int64_t al = a->as_int();
        if (al <= 0 || al > (1 << 20) || (al & (al - 1)) != 0)
            c.fail("general.alignment " + std::to_string(al) + " is not a power of two in [1, 2^20]");
        alignment_ = (uint64_t)al;
    }

    std::unordered_set<std::string> seen_names;
    tensors_.reserve((size_t)std::min<uint64_t>(n_tensors, c.remaining() / 24));
    for (uint64_t k = 0; k < n_tensors; k++) {
        GgufTensorInfo t;
        t.name = c.read_string("tensor name");
        const std::string what = "tensor '" + t.name + "'";
        if (t.name.empty() || !valid_utf8(t.name)) c.fail("tensor #" + std::to_string(k) + " has an empty or non-UTF-8 name");
        if (!seen_names.insert(t.name).second) c.fail("duplicate " + what);
        const uint32_t n_dims = c.read<uint32_t>(what.c_str());
        if (n_dims == 0 || n_dims > kMaxDims) c.fail(what + " has " + std::to_string(n_dims) + " dimensions (1 to 4 allowed)");
        uint64_t n_el = 1;
        for (uint32_t d = 0; d < n_dims; d++) {
            const uint64_t ne = c.read_count(what.c_str());
            if (ne == 0 || ne > (uint64_t)INT64_MAX) c.fail(what + " has dimension " + std::to_string(d) + " = " + std::to_string(ne));
            if (n_el > (uint64_t)INT64_MAX / ne) c.fail(what + " has too many elements (overflow)");
            n_el *= ne;
            t.ne.push_back((int64_t)ne);
        }
        const uint32_t type = c.read<uint32_t>(what.c_str());
        const TypeTraits* tt = type_traits(type);
        if (!tt) c.fail(what + " has unknown tensor type " + std::to_string(type));
        t.type = static_cast<GgmlType>(type);
        if (t.ne[0] % tt->block_size != 0)
            c.fail(what + ": row length " + std::to_string(t.ne[0]) + " is not a multiple of the " +
                   tt->name + " block size " + std::to_string(tt->block_size));
        t.offset = c.read<uint64_t>(what.c_str());
        t.n_elements = n_el;
        const uint64_t n_blocks = n_el / (uint64_t)tt->block_size;
        if (n_blocks > UINT64_MAX / tt->type_size) c.fail(what + " byte size overflows");
        t.n_bytes = n_blocks * tt->type_size;
        if (t.offset % alignment_ != 0)
            c.fail(what + " offset " + std::to_string(t.offset) + " is not aligned to " + std::to_string(alignment_));
        tensors_.push_back(std::move(t));
    }

    // The data section starts at the next multiple of the alignment.
    data_offset_ = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
    if (n_tensors > 0 && data_offset_ > size_)
        throw GgufError(path_ + ": data section starts at " + std::to_string(data_offset_) + ", past the end of the file");
    const uint64_t data_size = n_tensors > 0 ? size_ - data_offset_ : 0;

    // Bounds and overlaps: sort by offset and check each against the next.
    std::vector<const GgufTensorInfo*> by_off;
    for (const auto& t : tensors_) {
        if (t.offset > data_size || t.n_bytes > data_size - t.offset)
            throw GgufError(path_ + ": tensor '" + t.name + "' (" + std::to_string(t.n_bytes) + " bytes at data offset " +
                            std::to_string(t.offset) + ") extends past the end of the file");
        by_off.push_back(&t);
    }
    std::sort(by_off.begin(), by_off.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    for (size_t k = 1; k < by_off.size(); k++)
        if (by_off[k - 1]->offset + by_off[k - 1]->n_bytes > by_off[k]->offset)
            throw GgufError(path_ + ": tensors '" + by_off[k - 1]->name + "' and '" + by_off[k]->name + "' overlap");
}

const GgufValue* GgufFile::find(const std::string& key) const {
    for (const auto& kv : kvs_)
        if (kv.key == key) return &kv.value;
    return nullptr;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
    for (const auto& t : tensors_)
        if (t.name == name) return &t;
    return nullptr;
}

std::string GgufFile::get_string(const std::string& key) const {
    auto v = opt_string(key);
    if (!v) throw GgufError(path_ + ": missing metadata key '" + key + "'");
    return *v;
}
int64_t GgufFile::get_int(const std::string& key) const {
    auto v = opt_int(key);
    if (!v) throw GgufError(path_ + ": missing metadata key '" + key + "'");
    return *v;
}
double GgufFile::get_float(const std::string& key) const {
    auto v = opt_float(key);
    if (!v) throw GgufError(path_ + ": missing metadata key '" + key + "'");
    return *v;
}

std::optional<std::string> GgufFile::opt_string(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != GgufType::STRING)
        throw GgufError(path_ + ": metadata key '" + key + "' is " + gguf_type_name(v->type) + ", expected string");
    return v->str;
}
std::optional<int64_t> GgufFile::opt_int(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_integer())
        throw GgufError(path_ + ": metadata key '" + key + "' is " + gguf_type_name(v->type) + ", expected an integer");
    return v->as_int();
}
std::optional<double> GgufFile::opt_float(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_integer() && !v->is_float())
        throw GgufError(path_ + ": metadata key '" + key + "' is " + gguf_type_name(v->type) + ", expected a number");
    return v->as_float();
}
std::optional<bool> GgufFile::opt_bool(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != GgufType::BOOL)
        throw GgufError(path_ + ": metadata key '" + key + "' is " + gguf_type_name(v->type) + ", expected bool");
    return v->u != 0;
}

}  // namespace tandem
