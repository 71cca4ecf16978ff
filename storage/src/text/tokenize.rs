//! Tokenisation for the text index: lower-cased runs of letters and digits, English stop words
//! dropped. Queries and documents go through the same function, so a term matches only itself.

/// Longest token kept, in bytes; longer runs (base64, hashes) are cut to this.
pub const MAX_TOKEN_BYTES: usize = 64;

/// English stop words: articles, pronouns, auxiliaries, prepositions and question words. Short
/// enough to keep meaningful words ("not", "no" stay in); sorted for binary search.
const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "me",
    "more",
    "most",
    "my",
    "myself",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "s",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "t",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

/// True if `word` (lower-case) is a stop word.
pub fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.binary_search(&word).is_ok()
}

/// Calls `f` with every token of `text`, in order: maximal runs of alphanumeric characters,
/// lower-cased, cut to [`MAX_TOKEN_BYTES`], stop words skipped.
pub fn for_each_token(text: &str, mut f: impl FnMut(&str)) {
    let mut word = String::new();
    let mut flush = |word: &mut String| {
        if !word.is_empty() {
            if word.len() > MAX_TOKEN_BYTES {
                let mut cut = MAX_TOKEN_BYTES;
                while !word.is_char_boundary(cut) {
                    cut -= 1;
                }
                word.truncate(cut);
            }
            if !is_stop_word(word) {
                f(word);
            }
            word.clear();
        }
    };
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else {
            flush(&mut word);
        }
    }
    flush(&mut word);
}

/// The tokens of `text` as owned strings.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_token(text, |t| out.push(t.to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_words_are_sorted_and_lower_case() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(STOP_WORDS.iter().all(|w| w.to_lowercase() == *w));
    }

    #[test]
    fn splits_lowercases_and_drops_stop_words() {
        assert_eq!(
            tokenize("What is the TCP/IP stack? It's RFC-793, not Ümlaut-ÉCOLE."),
            ["tcp", "ip", "stack", "rfc", "793", "not", "ümlaut", "école"]
        );
        assert!(tokenize("").is_empty());
        assert!(tokenize("the of and, to!").is_empty());
    }

    #[test]
    fn long_tokens_are_cut_on_a_char_boundary() {
        let long = "é".repeat(100);
        let t = tokenize(&long);
        assert_eq!(t.len(), 1);
        assert!(t[0].len() <= MAX_TOKEN_BYTES && t[0].chars().all(|c| c == 'é'));
    }
}
