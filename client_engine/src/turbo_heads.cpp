// The head-bits file (tandem/turbo_heads.h): a fixed JSON shape, written by hand and read by
// the small strict reader below (the engine links no JSON library; it also builds on the GPU
// machine, which has none).
#include "tandem/turbo_heads.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

namespace tandem {

// ---- model signature --------------------------------------------------------------------------

std::string turbo_model_signature(const std::string& model_path, uint64_t* size_out) {
    std::ifstream in(model_path, std::ios::binary | std::ios::ate);
    if (!in) throw TurboHeadsError(model_path + ": cannot open the model to sign it");
    const uint64_t size = (uint64_t)in.tellg();
    constexpr uint64_t kPart = 1 << 20;
    uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64
    std::vector<char> buf((size_t)std::min(size, kPart));
    auto eat = [&](uint64_t at) {
        in.seekg((std::streamoff)at);
        in.read(buf.data(), (std::streamsize)buf.size());
        if (!in) throw TurboHeadsError(model_path + ": read failed while signing the model");
        for (char c : buf) h = (h ^ (uint8_t)c) * 0x100000001b3ull;
    };
    eat(0);
    eat(size - buf.size());
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
    if (size_out) *size_out = size;
    return hex;
}

std::string turbo_heads_path(const std::string& model_path) { return model_path + ".heads.json"; }

TurboHeads calibrate_turbo_heads(std::shared_ptr<const Model> model, const std::vector<int32_t>& tokens, float frac_2bit) {
    TurboHeads h;
    h.model_hash = turbo_model_signature(model->path(), &h.model_size);
    h.frac_2bit = frac_2bit;
    h.calibration_tokens = std::min<int64_t>((int64_t)tokens.size(), std::min<int64_t>(model->config().n_ctx_train, 1024));
    h.bits = calibrate_turbo_head_bits(model, tokens, frac_2bit, &h.scores);
    return h;
}

// ---- writing ----------------------------------------------------------------------------------

void write_turbo_heads(const std::string& path, const TurboHeads& h) {
    std::ostringstream o;
    o.precision(9);
    o << "{\n  \"format\": \"tandem-turbo-heads\",\n  \"version\": 1,\n";
    o << "  \"model\": {\"size\": " << h.model_size << ", \"hash\": \"" << h.model_hash << "\"},\n";
    o << "  \"frac_2bit\": " << h.frac_2bit << ",\n  \"calibration_tokens\": " << h.calibration_tokens << ",\n";
    o << "  \"n_layer\": " << h.bits.size() << ",\n  \"n_head_kv\": " << (h.bits.empty() ? 0 : h.bits[0].size()) << ",\n";
    o << "  \"bits\": [";
    for (size_t l = 0; l < h.bits.size(); l++) {
        o << (l ? ",\n    [" : "\n    [");
        for (size_t i = 0; i < h.bits[l].size(); i++) o << (i ? ", " : "") << (int)h.bits[l][i];
        o << "]";
    }
    o << "\n  ],\n  \"scores\": [";
    for (size_t l = 0; l < h.scores.size(); l++) {
        o << (l ? ",\n    [" : "\n    [");
        for (size_t i = 0; i < h.scores[l].size(); i++) o << (i ? ", " : "") << h.scores[l][i];
        o << "]";
    }
    o << "\n  ]\n}\n";
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw TurboHeadsError(path + ": cannot open for writing");
    out << o.str();
    out.close();
    if (!out) throw TurboHeadsError(path + ": write failed");
}

// ---- reading: a strict reader for objects, arrays, numbers and plain strings -----------------

namespace {

struct Json {
    enum Kind { Null, Bool, Num, Str, Arr, Obj } kind = Null;
    double num = 0;
    std::string str;
    std::vector<Json> arr;
    std::map<std::string, Json> obj;
};

class Reader {
public:
    Reader(const std::string& text, const std::string& file) : s_(text), file_(file) {}
    Json document() {
        Json v = value(0);
        ws();
        if (i_ != s_.size()) fail("trailing characters");
        return v;
    }

private:
    [[noreturn]] void fail(const std::string& why) {
        throw TurboHeadsError(file_ + ": not valid JSON at byte " + std::to_string(i_) + ": " + why);
    }
    void ws() {
        while (i_ < s_.size() && std::strchr(" \t\r\n", s_[i_])) i_++;
    }
    bool eat(char c) {
        ws();
        if (i_ < s_.size() && s_[i_] == c) return i_++, true;
        return false;
    }
    Json value(int depth) {
        if (depth > 8) fail("nested too deeply");
        ws();
        if (i_ >= s_.size()) fail("unexpected end");
        Json v;
        const char c = s_[i_];
        if (c == '{') {
            v.kind = Json::Obj, i_++;
            if (eat('}')) return v;
            do {
                ws();
                const std::string k = string();
                if (!eat(':')) fail("expected ':'");
                v.obj[k] = value(depth + 1);
            } while (eat(','));
            if (!eat('}')) fail("expected ',' or '}'");
        } else if (c == '[') {
            v.kind = Json::Arr, i_++;
            if (eat(']')) return v;
            do v.arr.push_back(value(depth + 1));
            while (eat(','));
            if (!eat(']')) fail("expected ',' or ']'");
        } else if (c == '"') {
            v.kind = Json::Str, v.str = string();
        } else if (s_.compare(i_, 4, "true") == 0 || s_.compare(i_, 5, "false") == 0) {
            v.kind = Json::Bool, v.num = s_[i_] == 't', i_ += s_[i_] == 't' ? 4 : 5;
        } else if (s_.compare(i_, 4, "null") == 0) {
            i_ += 4;
        } else {
            const char* b = s_.c_str() + i_;
            char* e = nullptr;
            v.kind = Json::Num, v.num = std::strtod(b, &e);
            if (e == b || !std::isfinite(v.num)) fail("expected a value");
            i_ += (size_t)(e - b);
        }
        return v;
    }
    std::string string() {
        if (i_ >= s_.size() || s_[i_] != '"') fail("expected a string");
        const size_t end = s_.find('"', ++i_);
        if (end == std::string::npos) fail("unterminated string");
        std::string r = s_.substr(i_, end - i_);
        if (r.find('\\') != std::string::npos) fail("escapes are not used in this file");
        i_ = end + 1;
        return r;
    }
    const std::string& s_;
    std::string file_;
    size_t i_ = 0;
};

// Field access that names the file and the field on failure.
struct Fields {
    const std::string& file;
    [[noreturn]] void bad(const std::string& field, const std::string& why) const {
        throw TurboHeadsError(file + ": field '" + field + "' " + why);
    }
    const Json& get(const Json& o, const std::string& key, Json::Kind kind, const std::string& name) const {
        auto it = o.obj.find(key);
        if (it == o.obj.end()) bad(name, "is missing");
        if (it->second.kind != kind) bad(name, "has the wrong type");
        return it->second;
    }
    int64_t integer(const Json& o, const std::string& key, const std::string& name, double lo, double hi) const {
        const double v = get(o, key, Json::Num, name).num;
        if (v != std::floor(v) || v < lo || v > hi) bad(name, "must be an integer in [" + std::to_string((int64_t)lo) + ", " + std::to_string((int64_t)hi) + "]");
        return (int64_t)v;
    }
};

}  // namespace

TurboHeads read_turbo_heads(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw TurboHeadsError(path + ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    if (text.size() > (16u << 20)) throw TurboHeadsError(path + ": larger than 16 MiB, not a heads file");
    const Json doc = Reader(text, path).document();
    const Fields f{path};
    if (doc.kind != Json::Obj) f.bad("(top level)", "must be an object");
    if (f.get(doc, "format", Json::Str, "format").str != "tandem-turbo-heads") f.bad("format", "must be \"tandem-turbo-heads\"");
    if (f.integer(doc, "version", "version", 0, 1e9) != 1) f.bad("version", "must be 1");
    TurboHeads h;
    const Json& model = f.get(doc, "model", Json::Obj, "model");
    h.model_size = (uint64_t)f.integer(model, "size", "model.size", 1, 9.0e15);
    h.model_hash = f.get(model, "hash", Json::Str, "model.hash").str;
    if (h.model_hash.size() != 16 || h.model_hash.find_first_not_of("0123456789abcdef") != std::string::npos)
        f.bad("model.hash", "must be 16 lowercase hex digits");
    const double frac = f.get(doc, "frac_2bit", Json::Num, "frac_2bit").num;
    if (!(frac >= 0 && frac <= 1)) f.bad("frac_2bit", "must be in [0, 1]");
    h.frac_2bit = (float)frac;
    h.calibration_tokens = f.integer(doc, "calibration_tokens", "calibration_tokens", 0, 1e12);
    const int64_t n_layer = f.integer(doc, "n_layer", "n_layer", 1, 100000);
    const int64_t n_head_kv = f.integer(doc, "n_head_kv", "n_head_kv", 1, kTurboMaxKvHeads);
    const Json& bits = f.get(doc, "bits", Json::Arr, "bits");
    const Json& scores = f.get(doc, "scores", Json::Arr, "scores");
    if ((int64_t)bits.arr.size() != n_layer) f.bad("bits", "has " + std::to_string(bits.arr.size()) + " layers, n_layer is " + std::to_string(n_layer));
    if ((int64_t)scores.arr.size() != n_layer) f.bad("scores", "has " + std::to_string(scores.arr.size()) + " layers, n_layer is " + std::to_string(n_layer));
    for (int64_t l = 0; l < n_layer; l++) {
        const std::string bn = "bits[" + std::to_string(l) + "]", sn = "scores[" + std::to_string(l) + "]";
        const Json& bl = bits.arr[(size_t)l];
        const Json& sl = scores.arr[(size_t)l];
        if (bl.kind != Json::Arr || (int64_t)bl.arr.size() != n_head_kv) f.bad(bn, "must list " + std::to_string(n_head_kv) + " heads");
        if (sl.kind != Json::Arr || (int64_t)sl.arr.size() != n_head_kv) f.bad(sn, "must list " + std::to_string(n_head_kv) + " heads");
        std::vector<uint8_t> b;
        std::vector<double> s;
        for (int64_t i = 0; i < n_head_kv; i++) {
            const Json& v = bl.arr[(size_t)i];
            if (v.kind != Json::Num || (v.num != 4 && v.num != 2)) f.bad(bn + "[" + std::to_string(i) + "]", "must be 4 or 2");
            if (sl.arr[(size_t)i].kind != Json::Num) f.bad(sn + "[" + std::to_string(i) + "]", "must be a number");
            b.push_back((uint8_t)v.num);
            s.push_back(sl.arr[(size_t)i].num);
        }
        h.bits.push_back(std::move(b));
        h.scores.push_back(std::move(s));
    }
    return h;
}

void check_turbo_heads(const TurboHeads& h, const Model& m, const std::string& path) {
    const ModelConfig& c = m.config();
    const Fields f{path};
    if ((int64_t)h.bits.size() != c.n_layer)
        f.bad("n_layer", "is " + std::to_string(h.bits.size()) + ", the model " + m.path() + " has " + std::to_string(c.n_layer) + " layers");
    for (size_t l = 0; l < h.bits.size(); l++)
        if ((int64_t)h.bits[l].size() != c.n_head_kv)
            f.bad("bits[" + std::to_string(l) + "]", "has " + std::to_string(h.bits[l].size()) + " entries, the model has " +
                                                         std::to_string(c.n_head_kv) + " KV heads");
    uint64_t size = 0;
    const std::string hash = turbo_model_signature(m.path(), &size);
    if (size != h.model_size)
        f.bad("model.size", "is " + std::to_string(h.model_size) + ", but " + m.path() + " has " + std::to_string(size) +
                                " bytes: the file was made for another model");
    if (hash != h.model_hash)
        f.bad("model.hash", "is " + h.model_hash + ", but " + m.path() + " signs as " + hash + ": the file was made for another model");
}

std::string apply_turbo_heads_file(const Model& m, ContextParams& cp) {
    if (!cp.turbo_kv || !cp.turbo_head_bits.empty()) return "";
    const std::string path = turbo_heads_path(m.path());
    if (!std::ifstream(path).good()) return "";
    const TurboHeads h = read_turbo_heads(path);
    check_turbo_heads(h, m, path);
    cp.turbo_head_bits = h.bits;
    cp.turbo.frac_2bit = h.frac_2bit;
    return path;
}

}  // namespace tandem
