// Chat prompt formats, detected from the GGUF's tokenizer.chat_template (a Jinja string we
// recognise by its markers, as llama.cpp does, rather than executing it).
//
//   format   detected by                        turn layout
//   chatml   <|im_start|>                       <|im_start|>ROLE\nTEXT<|im_end|>\n
//   llama3   <|start_header_id|>                <|start_header_id|>ROLE<|end_header_id|>\n\nTEXT<|eot_id|>
//   llama2   [INST] and <<SYS>>                 <s>[INST] <<SYS>>\nSYS\n<</SYS>>\n\nUSER [/INST] ANSWER </s>
//   mistral  [INST] without <<SYS>>             <s>[INST] USER [/INST] ANSWER</s>
//   phi3     <|assistant|> and <|end|>          <|ROLE|>\nTEXT<|end|>\n
//   zephyr   <|user|> and <|endoftext|>         <|ROLE|>\nTEXT<|endoftext|>\n
//   gemma    <start_of_turn>                    <start_of_turn>ROLE\nTEXT<end_of_turn>\n (assistant = model)
//   raw      anything else / absent             the messages' text concatenated
//
// Markup becomes control tokens only where the vocabulary has them; message text never does.
#pragma once
#include <string>
#include <vector>

#include "tandem/gguf.h"
#include "tandem/tokenizer.h"

namespace tandem {

enum class ChatFormat { Raw, ChatML, Llama3, Llama2, Mistral, Phi3, Zephyr, Gemma };

struct ChatTurn {
    std::string role;     // system, user or assistant
    std::string content;
};

ChatFormat detect_chat_format(const GgufFile& file);
ChatFormat chat_format_from_template(const std::string& jinja);
const char* chat_format_name(ChatFormat f);
ChatFormat chat_format_from_name(const std::string& name);  // throws std::invalid_argument

// Token ids for `messages` in format `f`, ending with the assistant's header when
// add_generation_prompt. Throws std::invalid_argument for an unknown role.
std::vector<int32_t> apply_chat_template(ChatFormat f, const std::vector<ChatTurn>& messages,
                                         bool add_generation_prompt, const Tokenizer& tok);

}  // namespace tandem
