//! Splitting documents into chunks measured in the embedding model's tokens.
//!
//! The text is cut into sentences (after `.`, `!`, `?` followed by white space, and at line
//! ends) grouped in paragraphs (blank lines). Sentences are packed greedily into chunks of at
//! most `size` tokens; a chunk also closes at a paragraph end once it is more than half full, so
//! chunks tend to follow the text's own structure. A sentence longer than a chunk is cut between
//! words. Each new chunk starts with the last sentences of the previous one, up to `overlap`
//! tokens. A chunk is a slice of the original text, so its white space is kept.

use crate::embed::{Embedder, ModelError};

/// How to chunk.
#[derive(Debug, Clone, Copy)]
pub struct ChunkParams {
    /// Most tokens per chunk (special tokens not counted); capped by the model's limit.
    pub size: usize,
    /// Tokens of the previous chunk repeated at the start of the next.
    pub overlap: usize,
}

impl Default for ChunkParams {
    fn default() -> Self {
        ChunkParams {
            size: 200,
            overlap: 32,
        }
    }
}

/// One piece of text: a byte range and its token count.
#[derive(Debug, Clone, Copy)]
struct Unit {
    start: usize,
    end: usize,
    tokens: usize,
    ends_paragraph: bool,
}

/// A chunk of a document.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// The chunk's text (a slice of the document).
    pub text: String,
    /// Byte offset of the chunk in the document.
    pub start: usize,
    /// Tokens, special tokens not counted.
    pub tokens: usize,
}

/// Splits `text` into chunks that fit the model.
pub fn chunk(
    text: &str,
    params: ChunkParams,
    model: &dyn Embedder,
) -> Result<Vec<Chunk>, ModelError> {
    let specials = model.count_tokens(&[String::new()])?[0];
    let budget = params
        .size
        .min(model.max_tokens().saturating_sub(specials))
        .max(1);
    let overlap = params.overlap.min(budget / 2);
    let count = |spans: &[(usize, usize)]| -> Result<Vec<usize>, ModelError> {
        let texts: Vec<String> = spans.iter().map(|&(s, e)| text[s..e].to_string()).collect();
        Ok(model
            .count_tokens(&texts)?
            .into_iter()
            .map(|n| n.saturating_sub(specials))
            .collect())
    };
    let spans = sentences(text);
    let counts = count(&spans.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>())?;
    let mut units = Vec::new();
    for (&(start, end, ends_paragraph), tokens) in spans.iter().zip(counts) {
        if tokens <= budget {
            units.push(Unit {
                start,
                end,
                tokens,
                ends_paragraph,
            });
        } else {
            let pieces = split_words(text, start, end, budget, &count)?;
            let last = pieces.len() - 1;
            for (i, mut u) in pieces.into_iter().enumerate() {
                u.ends_paragraph = ends_paragraph && i == last;
                units.push(u);
            }
        }
    }
    let mut chunks = Vec::new();
    let mut i = 0;
    while i < units.len() {
        let first = i;
        let mut tokens = 0;
        while i < units.len() && tokens + units[i].tokens <= budget {
            tokens += units[i].tokens;
            i += 1;
            if units[i - 1].ends_paragraph && tokens * 2 > budget {
                break;
            }
        }
        if i == first {
            // Cannot happen (every unit fits the budget), but never loop forever.
            i += 1;
        }
        let (start, end) = (units[first].start, units[i - 1].end);
        chunks.push(Chunk {
            text: text[start..end].to_string(),
            start,
            tokens,
        });
        if i < units.len() && overlap > 0 {
            // Step back over whole units that fit the overlap, but always move forward.
            let mut back = i;
            let mut kept = 0;
            while back > first + 1 && kept + units[back - 1].tokens <= overlap {
                kept += units[back - 1].tokens;
                back -= 1;
            }
            i = back;
        }
    }
    Ok(chunks)
}

/// Sentences as (start, end, ends a paragraph), trimmed of surrounding white space.
fn sentences(text: &str) -> Vec<(usize, usize, bool)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let push = |out: &mut Vec<(usize, usize, bool)>, s: usize, e: usize, para: bool| {
        let piece = &text[s..e];
        let lead = piece.len() - piece.trim_start().len();
        let trail = piece.len() - piece.trim_end().len();
        if s + lead < e - trail {
            out.push((s + lead, e - trail, para));
        } else if para {
            if let Some(last) = out.last_mut() {
                last.2 = true;
            }
        }
    };
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\n' {
            let mut j = i + 1;
            while j < bytes.len() && (bytes[j] == b' ' || bytes[j] == b'\t' || bytes[j] == b'\r') {
                j += 1;
            }
            let para = j < bytes.len() && bytes[j] == b'\n';
            push(&mut out, start, i, para);
            start = i + 1;
        } else if matches!(c, b'.' | b'!' | b'?')
            && bytes.get(i + 1).is_some_and(|n| n.is_ascii_whitespace())
        {
            push(&mut out, start, i + 1, false);
            start = i + 1;
        }
        i += 1;
    }
    push(&mut out, start, bytes.len(), true);
    out
}

type Counter<'a> = dyn Fn(&[(usize, usize)]) -> Result<Vec<usize>, ModelError> + 'a;

/// Cuts an over-long sentence between words into units of at most `budget` tokens.
fn split_words(
    text: &str,
    start: usize,
    end: usize,
    budget: usize,
    count: &Counter<'_>,
) -> Result<Vec<Unit>, ModelError> {
    let words: Vec<(usize, usize)> = text[start..end]
        .split_whitespace()
        .map(|w| {
            let s = w.as_ptr() as usize - text.as_ptr() as usize;
            (s, s + w.len())
        })
        .collect();
    let word_tokens = count(&words)?;
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let first = i;
        let mut tokens = 0;
        while i < words.len() && (i == first || tokens + word_tokens[i] <= budget) {
            tokens += word_tokens[i];
            i += 1;
        }
        let (s, e) = (words[first].0, words[i - 1].1);
        let mut tokens = count(&[(s, e)])?[0];
        let mut e = e;
        if tokens > budget {
            // A single word longer than a chunk: cut it at a character boundary.
            let mut cut = s + (e - s) * budget / tokens.max(1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            e = cut.max(s + text[s..].chars().next().map_or(1, char::len_utf8));
            tokens = count(&[(s, e)])?[0];
            i = first + 1;
            out.push(Unit {
                start: s,
                end: e,
                tokens: tokens.min(budget),
                ends_paragraph: false,
            });
            if e < words[first].1 {
                let rest = split_words(text, e, words[first].1, budget, count)?;
                out.extend(rest);
            }
            continue;
        }
        out.push(Unit {
            start: s,
            end: e,
            tokens,
            ends_paragraph: false,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::minilm::{FOLDER, MiniLm};
    use std::sync::OnceLock;

    /// The real model (its tokenizer decides the token counts); installed by scripts/models.sh.
    fn model() -> &'static MiniLm {
        static M: OnceLock<MiniLm> = OnceLock::new();
        M.get_or_init(|| {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../models")
                .join(FOLDER);
            MiniLm::load(&dir).expect("run ./scripts/models.sh")
        })
    }

    fn texts(chunks: &[Chunk]) -> Vec<&str> {
        chunks.iter().map(|c| c.text.as_str()).collect()
    }

    #[test]
    fn packs_sentences_up_to_the_budget() {
        // Each sentence is 4 tokens: three words and the full stop.
        let text =
            "One two three. Four five six. Seven eight nine.\n\nTen eleven twelve. Thirteen.";
        let p = ChunkParams {
            size: 8,
            overlap: 0,
        };
        let chunks = chunk(text, p, model()).unwrap();
        assert_eq!(
            texts(&chunks),
            [
                "One two three. Four five six.",
                "Seven eight nine.\n\nTen eleven twelve.",
                "Thirteen."
            ]
        );
        assert_eq!(chunks[0].tokens, 8);
        assert_eq!(chunks[1].start, text.find("Seven").unwrap());
    }

    #[test]
    fn closes_at_a_paragraph_end_once_half_full() {
        let text = "One two three. Four five six.\n\nSeven eight nine. Ten eleven twelve.";
        let p = ChunkParams {
            size: 12,
            overlap: 0,
        };
        let chunks = chunk(text, p, model()).unwrap();
        assert_eq!(
            texts(&chunks),
            [
                "One two three. Four five six.",
                "Seven eight nine. Ten eleven twelve."
            ]
        );
    }

    #[test]
    fn overlap_repeats_the_last_sentences() {
        let text = "One two three. Four five six. Seven eight nine. Ten eleven twelve.";
        let p = ChunkParams {
            size: 8,
            overlap: 4,
        };
        let chunks = chunk(text, p, model()).unwrap();
        assert_eq!(
            texts(&chunks),
            [
                "One two three. Four five six.",
                "Four five six. Seven eight nine.",
                "Seven eight nine. Ten eleven twelve."
            ]
        );
    }

    #[test]
    fn never_passes_the_model_limit() {
        // One sentence of 1,000 words, and one "word" of 3,000 tokens ("a." repeated: the
        // tokenizer splits punctuation, white space does not).
        let long: String = (0..1000).map(|i| format!("word{i} ")).collect();
        let huge = "a.".repeat(1500);
        for text in [long.as_str(), huge.as_str()] {
            let chunks = chunk(
                text,
                ChunkParams {
                    size: 10_000,
                    overlap: 0,
                },
                model(),
            )
            .unwrap();
            assert!(chunks.len() > 1);
            let all: Vec<String> = chunks.iter().map(|c| c.text.clone()).collect();
            for (c, n) in chunks.iter().zip(model().count_tokens(&all).unwrap()) {
                assert!(n <= MAX, "a chunk of {n} tokens (with specials)");
                assert!(!c.text.is_empty());
            }
            // Nothing is lost: the chunks hold every non-space character in order.
            let joined: String = all.concat().split_whitespace().collect();
            let original: String = text.split_whitespace().collect();
            assert_eq!(joined, original);
        }
    }

    const MAX: usize = crate::embed::minilm::MAX_TOKENS;

    #[test]
    fn empty_and_blank_texts_have_no_chunks() {
        assert!(
            chunk("", ChunkParams::default(), model())
                .unwrap()
                .is_empty()
        );
        assert!(
            chunk(" \n\n \t", ChunkParams::default(), model())
                .unwrap()
                .is_empty()
        );
    }
}
