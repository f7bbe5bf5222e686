// Decoding ids to text: whole sequences (Tokenizer::decode) and streams (StreamDecoder).
#include "tokenizer_impl.h"
#include "tandem/unicode.h"

namespace tandem {

std::string_view Tokenizer::Impl::piece_for_decode(TokenId id, bool render_special, bool& at_start) const {
    check_id(id);
    const TokenType t = type[id];
    if (t == TokenType::Control || t == TokenType::Unused) {
        return render_special ? std::string_view(token_texts[id]) : std::string_view();
    }
    std::string_view s = bytes[id];
    if (at_start && !s.empty()) {
        at_start = false;
        // llama: drop the space that encode() put before the text.
        if (kind == TokenizerKind::Spm && add_space_prefix && s[0] == ' ') s.remove_prefix(1);
    }
    return s;
}

std::string Tokenizer::decode(const TokenId* ids, size_t n, bool render_special) const {
    std::string out;
    bool at_start = true;
    for (size_t i = 0; i < n; ++i) out += impl_->piece_for_decode(ids[i], render_special, at_start);
    return out;
}

// ---- streaming ------------------------------------------------------------------------------

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool render_special, bool at_text_start)
    : impl_(tok.impl_), render_special_(render_special), text_start_(at_text_start), at_start_(at_text_start) {}

void StreamDecoder::push(TokenId id, std::string& out) {
    pending_ += impl_->piece_for_decode(id, render_special_, at_start_);
    const size_t hold = unicode::utf8_incomplete_tail(pending_);
    const std::string_view ready(pending_.data(), pending_.size() - hold);
    if (unicode::utf8_valid(ready)) out.append(ready);
    else out += unicode::utf8_sanitize(ready);
    pending_.erase(0, pending_.size() - hold);
}

void StreamDecoder::finish(std::string& out) {
    if (!pending_.empty()) out += "\xEF\xBF\xBD";  // an unfinished sequence: one replacement
    reset();
}

void StreamDecoder::reset() {
    pending_.clear();
    at_start_ = text_start_;
}

}  // namespace tandem
