// Chat prompt formats (see chat_template.h for the table).
#include "tandem/chat_template.h"

#include <stdexcept>

namespace tandem {

ChatFormat chat_format_from_template(const std::string& t) {
    auto has = [&](const char* s) { return t.find(s) != std::string::npos; };
    if (has("<|im_start|>")) return ChatFormat::ChatML;
    if (has("<|start_header_id|>") && has("<|end_header_id|>")) return ChatFormat::Llama3;
    if (has("[INST]")) return has("<<SYS>>") ? ChatFormat::Llama2 : ChatFormat::Mistral;
    if (has("<|assistant|>") && has("<|end|>")) return ChatFormat::Phi3;
    if (has("<|user|>") && has("<|endoftext|>")) return ChatFormat::Zephyr;
    if (has("<start_of_turn>")) return ChatFormat::Gemma;
    return ChatFormat::Raw;
}

ChatFormat detect_chat_format(const GgufFile& file) {
    const auto t = file.opt_string("tokenizer.chat_template");
    return t ? chat_format_from_template(*t) : ChatFormat::Raw;
}

static const char* const kNames[] = {"raw", "chatml", "llama3", "llama2", "mistral", "phi3", "zephyr", "gemma"};

const char* chat_format_name(ChatFormat f) { return kNames[static_cast<int>(f)]; }

ChatFormat chat_format_from_name(const std::string& name) {
    for (int i = 0; i < (int)(sizeof kNames / sizeof kNames[0]); i++)
        if (name == kNames[i]) return static_cast<ChatFormat>(i);
    throw std::invalid_argument("unknown chat format '" + name + "' (raw, chatml, llama3, llama2, mistral, phi3, zephyr, gemma)");
}

// Builds the token list from pieces of markup (control tokens when the vocabulary has them)
// and message text (never control tokens).
class PromptBuilder {
public:
    explicit PromptBuilder(const Tokenizer& tok) : tok_(tok) {}
    void markup(const std::string& s) {
        const TokenId id = tok_.find_special(s);
        if (id >= 0) { flush(); ids_.push_back(id); }
        else text_ += s;
    }
    void text(const std::string& s) { text_ += s; }
    void bos() {
        flush();
        if (tok_.bos() >= 0) ids_.push_back(tok_.bos());
    }
    std::vector<int32_t> finish() { flush(); return ids_; }

private:
    void flush() {
        if (text_.empty()) return;
        tok_.encode(text_, false, ids_);
        text_.clear();
    }
    const Tokenizer& tok_;
    std::vector<int32_t> ids_;
    std::string text_;
};

static void check_role(const std::string& r) {
    if (r != "system" && r != "user" && r != "assistant")
        throw std::invalid_argument("chat message role '" + r + "' is not system, user or assistant");
}

std::vector<int32_t> apply_chat_template(ChatFormat f, const std::vector<ChatTurn>& msgs, bool gen,
                                         const Tokenizer& tok) {
    PromptBuilder b(tok);
    for (const auto& m : msgs) check_role(m.role);
    switch (f) {
        case ChatFormat::ChatML:
            for (const auto& m : msgs) { b.markup("<|im_start|>"); b.text(m.role + "\n" + m.content); b.markup("<|im_end|>"); b.text("\n"); }
            if (gen) { b.markup("<|im_start|>"); b.text("assistant\n"); }
            break;
        case ChatFormat::Llama3:
            b.markup("<|begin_of_text|>");
            for (const auto& m : msgs) {
                b.markup("<|start_header_id|>"); b.text(m.role); b.markup("<|end_header_id|>");
                b.text("\n\n" + m.content); b.markup("<|eot_id|>");
            }
            if (gen) { b.markup("<|start_header_id|>"); b.text("assistant"); b.markup("<|end_header_id|>"); b.text("\n\n"); }
            break;
        case ChatFormat::Llama2:
        case ChatFormat::Mistral: {
            std::string system;
            for (const auto& m : msgs) {
                if (m.role == "system") { system = m.content; continue; }
                if (m.role == "user") {
                    b.bos();
                    b.markup("[INST]");
                    std::string u = " ";
                    if (!system.empty())
                        u += f == ChatFormat::Llama2 ? "<<SYS>>\n" + system + "\n<</SYS>>\n\n" : system + "\n\n";
                    system.clear();
                    b.text(u + m.content + " ");
                    b.markup("[/INST]");
                } else {
                    b.text((f == ChatFormat::Llama2 ? " " : "") + m.content + (f == ChatFormat::Llama2 ? " " : ""));
                    b.markup("</s>");
                }
            }
            break;
        }
        case ChatFormat::Phi3:
            for (const auto& m : msgs) { b.markup("<|" + m.role + "|>"); b.text("\n" + m.content); b.markup("<|end|>"); b.text("\n"); }
            if (gen) { b.markup("<|assistant|>"); b.text("\n"); }
            break;
        case ChatFormat::Zephyr:
            for (const auto& m : msgs) { b.markup("<|" + m.role + "|>"); b.text("\n" + m.content); b.markup("<|endoftext|>"); b.text("\n"); }
            if (gen) { b.markup("<|assistant|>"); b.text("\n"); }
            break;
        case ChatFormat::Gemma: {
            std::string system;
            b.bos();
            for (const auto& m : msgs) {
                if (m.role == "system") { system = m.content + "\n\n"; continue; }
                b.markup("<start_of_turn>");
                b.text((m.role == "assistant" ? "model" : "user") + std::string("\n") + system + m.content);
                system.clear();
                b.markup("<end_of_turn>");
                b.text("\n");
            }
            if (gen) { b.markup("<start_of_turn>"); b.text("model\n"); }
            break;
        }
        case ChatFormat::Raw:
            if (tok.add_bos()) b.bos();
            for (const auto& m : msgs) b.text(m.content);
            break;
    }
    return b.finish();
}

}  // namespace tandem
