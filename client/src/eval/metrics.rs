//! The arithmetic of `quiver eval`, kept apart from the I/O so each formula is tested by hand.
//!
//! Retrieval metrics look at *distinct documents in rank order*: a search returns chunks, and
//! several chunks of one document count once, at the rank of its best chunk.
//!
//! | function              | formula                                                        |
//! |-----------------------|----------------------------------------------------------------|
//! | [`recall`]            | relevant docs among the ranked docs / relevant docs             |
//! | [`reciprocal_rank`]   | 1 / rank of the first relevant doc (0 when none)                |
//! | [`ndcg`]              | DCG / ideal DCG, binary gains, DCG = Σ rel_i / log2(i + 1)      |
//! | [`percentile`]        | nearest rank: the ⌈p/100 · n⌉-th smallest value                 |
//! | [`support_share`]     | sentences whose best cosine to a support chunk ≥ threshold      |

use std::collections::HashSet;

/// Distinct document ids in the order they first appear (the rank order of their best chunk).
pub fn distinct_in_order<'a>(ranked: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    ranked.into_iter().filter(|d| seen.insert(*d)).collect()
}

/// Share of the relevant documents found among `ranked` (already cut to the top k chunks).
/// A question without relevant documents scores 0 (it is malformed, and the caller refuses it).
pub fn recall(ranked: &[&str], relevant: &HashSet<&str>) -> f64 {
    if relevant.is_empty() {
        return 0.0;
    }
    let found = ranked.iter().filter(|d| relevant.contains(*d)).count();
    found as f64 / relevant.len() as f64
}

/// 1 / (rank of the first relevant document, from 1), or 0 when none is ranked.
pub fn reciprocal_rank(ranked: &[&str], relevant: &HashSet<&str>) -> f64 {
    ranked
        .iter()
        .position(|d| relevant.contains(*d))
        .map_or(0.0, |i| 1.0 / (i + 1) as f64)
}

/// Normalised discounted cumulative gain over `ranked` with binary relevance:
/// DCG = Σ_{i ≥ 1} rel_i / log2(i + 1); the ideal ranking puts min(|relevant|, k) relevant
/// documents first, `k` being the cut-off (the number of chunks asked for).
pub fn ndcg(ranked: &[&str], relevant: &HashSet<&str>, k: usize) -> f64 {
    let gain = |i: usize| 1.0 / ((i + 2) as f64).log2();
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, d)| relevant.contains(*d))
        .map(|(i, _)| gain(i))
        .sum();
    let ideal: f64 = (0..relevant.len().min(k)).map(gain).sum();
    if ideal == 0.0 { 0.0 } else { dcg / ideal }
}

/// Nearest-rank percentile (`p` in 0..=100) of `values`; `None` when there are none.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// Mean of `values`; `None` when there are none.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Dot product: the cosine of two unit vectors (the server's embeddings are L2-normalised).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

/// The answer's sentences, citation markers like `[2]` removed, each with at least one letter.
/// A sentence ends at `.`, `!` or `?` followed by white space or the end, or at a line break.
pub fn sentences(answer: &str) -> Vec<String> {
    let clean = strip_citations(answer);
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = clean.chars().peekable();
    while let Some(c) = chars.next() {
        let ends = c == '\n'
            || (matches!(c, '.' | '!' | '?') && chars.peek().is_none_or(|n| n.is_whitespace()));
        if c != '\n' {
            cur.push(c);
        }
        if ends {
            push_sentence(&mut out, &mut cur);
        }
    }
    push_sentence(&mut out, &mut cur);
    out
}

fn push_sentence(out: &mut Vec<String>, cur: &mut String) {
    let s = cur.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().any(char::is_alphabetic) {
        out.push(s);
    }
    cur.clear();
}

/// `text` without `[n]` / `[n, m]` citation markers.
pub fn strip_citations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close)
                if close > 0
                    && after[..close]
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == ',' || c == ' ') =>
            {
                let kept = out.trim_end().len();
                out.truncate(kept);
                rest = &after[close + 1..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether the answer declines ("I don't know", as the server says when no chunk is close
/// enough, or the model's own wording of it).
pub fn says_dont_know(answer: &str) -> bool {
    let a = answer.to_lowercase().replace('\u{2019}', "'");
    [
        "i don't know",
        "i do not know",
        "i don't have",
        "i cannot answer",
    ]
    .iter()
    .any(|p| a.contains(p))
}

/// Share of `sentences` (vectors) whose best cosine to any of `support` (vectors) is at least
/// `threshold`; `None` when there are no sentences.
pub fn support_share(sentences: &[Vec<f32>], support: &[Vec<f32>], threshold: f64) -> Option<f64> {
    if sentences.is_empty() {
        return None;
    }
    let supported = sentences
        .iter()
        .filter(|s| support.iter().any(|c| cosine(s, c) >= threshold))
        .count();
    Some(supported as f64 / sentences.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel<'a>(ids: &[&'a str]) -> HashSet<&'a str> {
        ids.iter().copied().collect()
    }

    #[test]
    fn distinct_keeps_the_first_rank_of_each_document() {
        let chunks = ["a", "b", "a", "c", "b", "d"];
        assert_eq!(distinct_in_order(chunks), vec!["a", "b", "c", "d"]);
    }

    #[test]
    fn recall_counts_relevant_documents_found() {
        let ranked = ["x", "a", "y", "b"];
        assert_eq!(recall(&ranked, &rel(&["a", "b"])), 1.0);
        assert_eq!(recall(&ranked, &rel(&["a", "z"])), 0.5);
        assert_eq!(recall(&ranked, &rel(&["z", "w", "b"])), 1.0 / 3.0);
        assert_eq!(recall(&ranked, &rel(&[])), 0.0);
        assert_eq!(recall(&[], &rel(&["a"])), 0.0);
    }

    #[test]
    fn reciprocal_rank_of_the_first_relevant_document() {
        assert_eq!(reciprocal_rank(&["a", "b"], &rel(&["a"])), 1.0);
        assert_eq!(
            reciprocal_rank(&["x", "y", "a", "b"], &rel(&["b", "a"])),
            1.0 / 3.0
        );
        assert_eq!(reciprocal_rank(&["x", "y"], &rel(&["a"])), 0.0);
    }

    #[test]
    fn ndcg_by_hand() {
        // One relevant document at rank 1: DCG = 1/log2(2) = 1 = ideal.
        assert_eq!(ndcg(&["a", "x"], &rel(&["a"]), 10), 1.0);
        // At rank 2: 1/log2(3) = 0.630930; ideal 1.
        let got = ndcg(&["x", "a"], &rel(&["a"]), 10);
        assert!((got - 0.630_929_75).abs() < 1e-6, "{got}");
        // Two relevant at ranks 1 and 3: (1 + 1/log2(4)) / (1 + 1/log2(3)) = 1.5 / 1.630930.
        let got = ndcg(&["a", "x", "b"], &rel(&["a", "b"]), 10);
        assert!((got - 0.919_720_6).abs() < 1e-6, "{got}");
        // Three relevant, cut-off 2: the ideal has two gains, 1 + 0.630930; one found at rank 2.
        let got = ndcg(&["x", "a", "b"], &rel(&["a", "b", "c"]), 2);
        assert!((got - 0.630_929_75 / 1.630_929_75).abs() < 1e-6, "{got}");
        assert_eq!(ndcg(&["x"], &rel(&["a"]), 10), 0.0);
        assert_eq!(ndcg(&["x"], &rel(&[]), 10), 0.0);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(percentile(&v, 50.0), Some(3.0)); // ⌈2.5⌉ = 3rd smallest
        assert_eq!(percentile(&v, 95.0), Some(5.0)); // ⌈4.75⌉ = 5th
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 50.0), Some(50.0));
        assert_eq!(percentile(&hundred, 95.0), Some(95.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(mean(&[1.0, 2.0, 6.0]), Some(3.0));
        assert_eq!(mean(&[]), None);
    }

    #[test]
    fn sentences_split_and_lose_citation_markers() {
        assert_eq!(
            sentences("Etna is a volcano [1]. It erupts often [1, 2]!\nIs it safe? No"),
            vec![
                "Etna is a volcano.",
                "It erupts often!",
                "Is it safe?",
                "No"
            ]
        );
        // A dot inside a number does not end a sentence; a bare marker is no sentence.
        assert_eq!(
            sentences("Version 3.14 is out [2]. [3]"),
            vec!["Version 3.14 is out."]
        );
        assert_eq!(strip_citations("a [x] b [12] c [1,3]"), "a [x] b c");
        assert!(sentences("  [1] ").is_empty());
    }

    #[test]
    fn dont_know_answers_are_recognised() {
        assert!(says_dont_know("I don't know."));
        assert!(says_dont_know("Sorry, I do not know the answer."));
        assert!(says_dont_know("I don\u{2019}t know"));
        assert!(!says_dont_know("Etna is a volcano in Sicily."));
    }

    #[test]
    fn support_share_by_hand() {
        let e = |i: usize| {
            let mut v = vec![0.0f32; 3];
            v[i] = 1.0;
            v
        };
        // Sentence vectors: e0, e1, (e0 + e2)/√2; support e0 only.
        let s2 = vec![
            std::f32::consts::FRAC_1_SQRT_2,
            0.0,
            std::f32::consts::FRAC_1_SQRT_2,
        ];
        let sentences = vec![e(0), e(1), s2];
        // Cosines to e0: 1, 0, 0.7071 → 2 of 3 at 0.5, 1 of 3 at 0.8.
        assert_eq!(support_share(&sentences, &[e(0)], 0.5), Some(2.0 / 3.0));
        assert_eq!(support_share(&sentences, &[e(0)], 0.8), Some(1.0 / 3.0));
        // Adding e1 to the support covers the second sentence.
        assert_eq!(
            support_share(&sentences, &[e(0), e(1)], 0.8),
            Some(2.0 / 3.0)
        );
        assert_eq!(support_share(&[], &[e(0)], 0.5), None);
        assert_eq!(support_share(&sentences, &[], 0.5), Some(0.0));
        assert!((cosine(&e(0), &e(0)) - 1.0).abs() < 1e-12);
    }
}
