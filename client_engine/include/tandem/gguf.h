// GGUF model files: a strict reader over a read-only mmap, and a writer.
//
// File layout (little-endian; v1 stores counts/lengths as u32, v2 and v3 as u64):
//
//   offset  size   field
//   0       4      magic "GGUF"
//   4       4      u32 version (1, 2 or 3)
//   8       8      n_tensors
//   16      8      n_kv
//   24      ...    n_kv x { string key; u32 value_type; value }
//   ...     ...    n_tensors x { string name; u32 n_dims; n_dims x u64 ne; u32 type; u64 offset }
//   ...            padding to `general.alignment` (default 32)
//   data    ...    tensor data; each tensor at data + offset, offsets aligned
//
//   string = { count len; u8 bytes[len] } (UTF-8, no terminator)
//   array  = { u32 element_type; count n; n x element }  (nested arrays are rejected)
//
// Every offset, size and count is checked against the file before it is used. Any problem
// throws GgufError whose message names the file, the key or tensor, and the reason.
// GgufFile is immutable after open() and safe to read from several threads.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "tandem/quant_types.h"

namespace tandem {

class GgufError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

enum class GgufType : uint32_t {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
    STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* gguf_type_name(GgufType t);
size_t gguf_type_size(GgufType t);  // bytes of a scalar; 0 for STRING and ARRAY

// One metadata value. Scalars live in the field for their kind; arrays of numbers keep their
// raw little-endian bytes (exact round trip), arrays of strings keep the strings.
struct GgufValue {
    GgufType type = GgufType::UINT8;
    uint64_t u = 0;        // UINT8/16/32/64, BOOL
    int64_t i = 0;         // INT8/16/32/64
    double f = 0;          // FLOAT32/64
    std::string str;       // STRING
    GgufType elem_type = GgufType::UINT8;  // ARRAY: element type
    uint64_t n_elems = 0;                  // ARRAY: element count
    std::vector<uint8_t> elems;            // ARRAY of numbers/bools: raw bytes
    std::vector<std::string> strs;         // ARRAY of STRING

    bool is_integer() const;
    bool is_float() const { return type == GgufType::FLOAT32 || type == GgufType::FLOAT64; }
    int64_t as_int() const;     // any integer or bool; throws GgufError otherwise
    double as_float() const;    // any number
    // Numeric array elements converted; throws if this is not an array of numbers.
    std::vector<float> as_f32_array() const;
    std::vector<int64_t> as_i64_array() const;

    static GgufValue of_u32(uint32_t v);
    static GgufValue of_i32(int32_t v);
    static GgufValue of_u64(uint64_t v);
    static GgufValue of_f32(float v);
    static GgufValue of_bool(bool v);
    static GgufValue of_string(std::string v);
    static GgufValue of_strings(std::vector<std::string> v);
    static GgufValue of_f32s(const std::vector<float>& v);
    static GgufValue of_i32s(const std::vector<int32_t>& v);
};

struct GgufKv {
    std::string key;
    GgufValue value;
};

struct GgufTensorInfo {
    std::string name;
    std::vector<int64_t> ne;  // dims, ne[0] innermost (contiguous) as in ggml
    GgmlType type = GgmlType::F32;
    uint64_t offset = 0;      // from the start of the data section
    uint64_t n_elements = 0;
    uint64_t n_bytes = 0;
};

class GgufFile {
public:
    // Maps `path` read-only and validates everything. Throws GgufError.
    static GgufFile open(const std::string& path);
    // Parses bytes the caller keeps alive (fuzzing, tests); `name` is used in messages.
    static GgufFile from_memory(const void* data, size_t size, const std::string& name);

    GgufFile(GgufFile&&) noexcept;
    GgufFile& operator=(GgufFile&&) noexcept;
    ~GgufFile();

    const std::string& path() const { return path_; }
    uint32_t version() const { return version_; }
    uint64_t file_size() const { return size_; }
    uint64_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }

    const std::vector<GgufKv>& metadata() const { return kvs_; }
    const GgufValue* find(const std::string& key) const;  // nullptr when absent
    // Typed getters: throw GgufError naming the key when absent or of the wrong type.
    std::string get_string(const std::string& key) const;
    int64_t get_int(const std::string& key) const;
    double get_float(const std::string& key) const;
    std::optional<std::string> opt_string(const std::string& key) const;
    std::optional<int64_t> opt_int(const std::string& key) const;
    std::optional<double> opt_float(const std::string& key) const;
    std::optional<bool> opt_bool(const std::string& key) const;

    const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
    const GgufTensorInfo* find_tensor(const std::string& name) const;  // nullptr when absent
    const uint8_t* tensor_data(const GgufTensorInfo& t) const { return base_ + data_offset_ + t.offset; }
    // Lets the OS drop this process's resident pages of bytes [p, p + n) of the mapping (the
    // whole pages inside the range): once a tensor has been copied elsewhere its original need
    // not count in memory. Reading the bytes again is still fine (they come back from the
    // file). No-op for from_memory files and ranges outside the mapping.
    void release_pages(const void* p, size_t n) const;

private:
    GgufFile() = default;
    void parse();

    std::string path_;
    const uint8_t* base_ = nullptr;
    uint64_t size_ = 0;
    void* mapping_ = nullptr;  // non-null when we own an mmap
    uint32_t version_ = 0;
    uint64_t alignment_ = 32;
    uint64_t data_offset_ = 0;
    std::vector<GgufKv> kvs_;
    std::vector<GgufTensorInfo> tensors_;
};

// Builds a GGUF v3 file in memory. Keys keep insertion order; setting a key again replaces it.
class GgufWriter {
public:
    void set(const std::string& key, GgufValue value);
    // Adds a tensor from raw bytes already in `type`'s layout (copied).
    void add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> ne, const void* data,
                    size_t n_bytes);
    // Adds a tensor from floats, quantized with the type's reference quantizer.
    void add_tensor_from_f32(const std::string& name, GgmlType type, std::vector<int64_t> ne,
                             const float* values);
    std::string to_bytes() const;
    void write(const std::string& path) const;  // throws GgufError on I/O failure

private:
    struct PendingTensor {
        GgufTensorInfo info;
        std::vector<uint8_t> data;
    };
    uint64_t alignment() const;
    std::vector<GgufKv> kvs_;
    std::vector<PendingTensor> tensors_;
};

}  // namespace tandem
