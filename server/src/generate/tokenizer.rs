//! The generation model's tokenizer, rebuilt from the GGUF file's metadata: byte-level BPE with
//! its vocabulary (`tokenizer.ggml.tokens`) and merge list (`tokenizer.ggml.merges`), digits split
//! one by one before the byte-level split (as SmolLM2's own tokenizer does), and the control
//! tokens (`<|im_start|>`, `<|im_end|>`, ...) as special tokens matched whole in the text.

use crate::embed::ModelError;
use candle_core::quantized::gguf_file;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

/// GGUF token type of control tokens.
const CONTROL: i32 = 3;

/// A tokenizer and the ids the chat format needs.
pub struct ChatTokenizer {
    inner: Tokenizer,
    /// `<|im_end|>`: ends a turn, and generation.
    pub im_end: u32,
    /// The end-of-text token, also a stop.
    pub eos: u32,
}

fn meta<'a>(ct: &'a gguf_file::Content, key: &str) -> Result<&'a gguf_file::Value, String> {
    ct.metadata
        .get(key)
        .ok_or_else(|| format!("no {key} in the GGUF metadata"))
}

impl ChatTokenizer {
    /// Builds the tokenizer from a GGUF file's metadata.
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<ChatTokenizer, String> {
        let tokens = meta(ct, "tokenizer.ggml.tokens")?
            .to_vec()
            .map_err(|e| e.to_string())?;
        let merges = meta(ct, "tokenizer.ggml.merges")?
            .to_vec()
            .map_err(|e| e.to_string())?;
        let types = match ct.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => v.to_vec().map_err(|e| e.to_string())?.clone(),
            None => Vec::new(),
        };
        let mut vocab = Vocab::default();
        let mut specials = Vec::new();
        for (id, t) in tokens.iter().enumerate() {
            let s = t.to_string().map_err(|e| e.to_string())?.clone();
            let control = types.get(id).and_then(|v| v.to_i32().ok()) == Some(CONTROL);
            if control {
                specials.push(AddedToken::from(s.clone(), true));
            }
            vocab.insert(s, id as u32);
        }
        let merges = merges
            .iter()
            .map(|m| {
                let m = m.to_string().map_err(|e| e.to_string())?;
                let (a, b) = m
                    .split_once(' ')
                    .ok_or_else(|| format!("bad merge {m:?}"))?;
                Ok((a.to_string(), b.to_string()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab.clone(), merges)
            .build()
            .map_err(|e| e.to_string())?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        inner
            .add_special_tokens(specials)
            .map_err(|e| e.to_string())?;
        let id = |s: &str| {
            vocab
                .get(s)
                .copied()
                .ok_or_else(|| format!("the vocabulary has no {s}"))
        };
        Ok(ChatTokenizer {
            im_end: id("<|im_end|>")?,
            eos: id("<|endoftext|>")?,
            inner,
        })
    }

    /// Token ids of `text`; special tokens written in the text become their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| ModelError::Inference(format!("tokenizer: {e}")))
    }

    /// Text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| ModelError::Inference(format!("tokenizer: {e}")))
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// One turn of a chat.
#[derive(Debug, Clone)]
pub struct Message {
    /// "system", "user" or "assistant".
    pub role: String,
    /// The text.
    pub content: String,
}

/// The system prompt the model's chat template inserts when the chat has none.
pub const DEFAULT_SYSTEM: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// The ChatML prompt of SmolLM2's template, ending with the opened assistant turn.
pub fn chat_prompt(messages: &[Message]) -> String {
    let mut out = String::new();
    if messages.first().is_none_or(|m| m.role != "system") {
        out.push_str(&format!("<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n"));
    }
    for m in messages {
        out.push_str(&format!(
            "<|im_start|>{}\n{}<|im_end|>\n",
            m.role, m.content
        ));
    }
    out.push_str("<|im_start|>assistant\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::path::Path;

    /// The tokenizer of the installed GGUF file (scripts/models.sh); only metadata is read.
    fn tokenizer() -> ChatTokenizer {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let path = root
            .join("models")
            .join(super::super::FOLDER)
            .join(super::super::FILE);
        let mut f = std::fs::File::open(&path).expect("run ./scripts/models.sh");
        let ct = gguf_file::Content::read(&mut f).unwrap();
        ChatTokenizer::from_gguf(&ct).unwrap()
    }

    #[test]
    fn encodes_like_the_reference_and_decodes_back() {
        let t = tokenizer();
        assert_eq!(t.vocab_size(), 49_152);
        assert_eq!((t.im_end, t.eos), (2, 0));
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
        let rows = std::fs::read_to_string(root.join("smollm2-tokenizer.jsonl")).unwrap();
        let mut checked = 0;
        for line in rows.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if let Some(text) = v["text"].as_str() {
                let want: Vec<u32> = v["ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect();
                assert_eq!(t.encode(text).unwrap(), want, "{text:?}");
                if !text.contains("<|") {
                    assert_eq!(t.decode(&want).unwrap(), text);
                }
                checked += 1;
            }
            if let Some(ex) = v.get("chat_template_example") {
                let msgs: Vec<Message> = ex["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| Message {
                        role: m["role"].as_str().unwrap().into(),
                        content: m["content"].as_str().unwrap().into(),
                    })
                    .collect();
                let prompt = chat_prompt(&msgs);
                assert_eq!(prompt, ex["prompt"].as_str().unwrap());
                let want: Vec<u32> = ex["ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect();
                assert_eq!(t.encode(&prompt).unwrap(), want);
                checked += 1;
            }
        }
        assert_eq!(checked, 8, "every fixture row was checked");
    }
}
