//! Response-quality signals: the seed's `QualityMonitor.analyze_response`.
//!
//! **Invariant:** for the default [`QualityConfig`] the answers equal the
//! seed's for the same text: patterns are regexes searched case-insensitively
//! (`re.search(p, response, re.IGNORECASE)`), sentiment words are whole words
//! counted with `findall(r'\b(w1|w2|…)\b', re.IGNORECASE)`, the word count is
//! Python's `len(response.split())` and the length is `len(response)` in
//! Unicode scalar values. Patterns are compiled once, in [`QualityAnalyzer::new`].

use regex::Regex;

use crate::api::{QualityAnalysis, QualityConfig, QueryError};

/// The compiled form of a [`QualityConfig`].
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    /// One alternation of every refusal pattern; `None` when the list is empty.
    refusal: Option<Regex>,
    hedging: Option<Regex>,
    positive: Option<Regex>,
    negative: Option<Regex>,
}

fn compile_patterns(field: &str, patterns: &[String]) -> Result<Option<Regex>, QueryError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    for (i, p) in patterns.iter().enumerate() {
        Regex::new(&format!("(?i){p}")).map_err(|e| QueryError::InvalidInput {
            field: format!("{field}[{i}]"),
            message: format!("pattern {p:?} does not compile: {e}"),
        })?;
    }
    let alternation = patterns
        .iter()
        .map(|p| format!("(?:{p})"))
        .collect::<Vec<_>>()
        .join("|");
    Regex::new(&format!("(?i){alternation}"))
        .map(Some)
        .map_err(|e| QueryError::InvalidInput {
            field: field.to_string(),
            message: format!("patterns do not compile together: {e}"),
        })
}

fn compile_words(field: &str, words: &[String]) -> Result<Option<Regex>, QueryError> {
    if words.is_empty() {
        return Ok(None);
    }
    // The seed's lists are plain words inside a regex group; a configured
    // word is taken literally.
    let alternation = words
        .iter()
        .map(|w| regex::escape(w))
        .collect::<Vec<_>>()
        .join("|");
    Regex::new(&format!(r"(?i)\b(?:{alternation})\b"))
        .map(Some)
        .map_err(|e| QueryError::InvalidInput {
            field: field.to_string(),
            message: format!("word list does not compile: {e}"),
        })
}

/// Python's `str.isspace` for one character: Unicode White_Space plus the
/// four ASCII information separators U+001C..U+001F.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `len(s.split())` in Python.
pub(crate) fn py_word_count(s: &str) -> usize {
    s.split(py_isspace).filter(|w| !w.is_empty()).count()
}

impl Compiled {
    pub(crate) fn new(config: &QualityConfig) -> Result<Compiled, QueryError> {
        Ok(Compiled {
            refusal: compile_patterns("refusal_patterns", &config.refusal_patterns)?,
            hedging: compile_patterns("hedging_patterns", &config.hedging_patterns)?,
            positive: compile_words("positive_words", &config.positive_words)?,
            negative: compile_words("negative_words", &config.negative_words)?,
        })
    }

    pub(crate) fn analyze(&self, response: &str) -> QualityAnalysis {
        let found = |r: &Option<Regex>| r.as_ref().is_some_and(|r| r.is_match(response));
        let count = |r: &Option<Regex>| r.as_ref().map_or(0, |r| r.find_iter(response).count());
        let positive = count(&self.positive) as f64;
        let negative = count(&self.negative) as f64;
        let words = py_word_count(response).max(1) as f64;
        QualityAnalysis {
            response_length: response.chars().count() as u64,
            has_refusal: found(&self.refusal),
            has_hallucination_markers: found(&self.hedging),
            sentiment_score: (positive - negative) / words,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyzer() -> Compiled {
        Compiled::new(&QualityConfig::default()).expect("seed patterns compile")
    }

    /// (text, has_refusal, has_hedging, sentiment_score, response_length)
    fn check(text: &str, refusal: bool, hedging: bool, sentiment: f64, length: u64) {
        let a = analyzer().analyze(text);
        assert_eq!(a.has_refusal, refusal, "refusal for {text:?}");
        assert_eq!(a.has_hallucination_markers, hedging, "hedging for {text:?}");
        assert!(
            (a.sentiment_score - sentiment).abs() < 1e-12,
            "sentiment for {text:?}: {} want {sentiment}",
            a.sentiment_score
        );
        assert_eq!(a.response_length, length, "length for {text:?}");
    }

    #[test]
    fn each_seed_refusal_pattern_is_detected() {
        for text in [
            "Sorry. I cannot do that.",
            "I'm unable to help",
            "I don't have access to the internet",
            "I apologize, but no",
            "As an AI model",
            "I'm not able to say",
        ] {
            let a = analyzer().analyze(text);
            assert!(a.has_refusal, "{text:?}");
            assert!(!a.has_hallucination_markers, "{text:?}");
        }
    }

    #[test]
    fn each_seed_hedging_pattern_is_detected() {
        for text in [
            "I think so",
            "I believe it is",
            "It is probably fine",
            "That might be it",
            "I'm not sure",
            "as far as I know, yes",
        ] {
            let a = analyzer().analyze(text);
            assert!(a.has_hallucination_markers, "{text:?}");
            assert!(!a.has_refusal, "{text:?}");
        }
    }

    #[test]
    fn patterns_are_case_insensitive() {
        check("i CANNOT", true, false, 0.0, 8);
        check("AS AN ai", true, false, 0.0, 8);
        check("PROBABLY", false, true, 0.0, 8);
        check("As Far As I Know", false, true, 0.0, 16);
    }

    #[test]
    fn patterns_match_inside_words_like_re_search() {
        // re.search has no word boundaries: "probably" inside "improbably" matches.
        check("improbably", false, true, 0.0, 10);
    }

    #[test]
    fn sentiment_counts_whole_words_over_python_split() {
        check("Good answer, great help", false, false, 2.0 / 4.0, 23);
        check("GOOD good goodness", false, false, 2.0 / 3.0, 18);
        check("wrong wrong correct", false, false, -1.0 / 3.0, 19);
        check("sorry, I cannot", true, false, -1.0 / 3.0, 15);
        // Python's split() also splits on U+001F and NBSP; Rust's is_whitespace misses U+001F.
        check("good\u{1f}bad\u{a0}great", false, false, 1.0 / 3.0, 14);
    }

    #[test]
    fn text_with_no_signal_and_empty_text() {
        check("The capital of France is Paris.", false, false, 0.0, 31);
        check("", false, false, 0.0, 0);
        check("   ", false, false, 0.0, 3);
    }

    #[test]
    fn length_counts_unicode_scalars_like_python_len() {
        check("héllo wörld 😀", false, false, 0.0, 13);
    }

    #[test]
    fn custom_lists_replace_the_defaults_and_bad_patterns_are_named() {
        let cfg = QualityConfig {
            refusal_patterns: vec!["nope".into()],
            hedging_patterns: vec![],
            positive_words: vec!["yay".into()],
            negative_words: vec![],
        };
        let a = Compiled::new(&cfg).unwrap().analyze("NOPE, I think yay");
        assert!(a.has_refusal);
        assert!(!a.has_hallucination_markers);
        let bad = QualityConfig {
            hedging_patterns: vec!["ok".into(), "(unclosed".into()],
            ..QualityConfig::default()
        };
        match Compiled::new(&bad) {
            Err(QueryError::InvalidInput { field, .. }) => assert_eq!(field, "hedging_patterns[1]"),
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }
}
