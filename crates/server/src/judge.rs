//! The factual-accuracy judge (the seed's `evaluate_factual_accuracy`): an
//! OpenAI-compatible chat-completions call with the seed's prompt.
//!
//! Invariant: only a number parsed from the answer and inside [0, 1] is ever
//! returned; a failed call or an unparseable answer is an error (counted by
//! the caller, never replaced by the seed's made-up 0.5).

use std::time::Duration;

use crate::config::JudgeSection;

/// The seed's prompt; `response` and `ground_truth` are cut to 1,000 characters.
pub(crate) fn prompt(response: &str, ground_truth: &str) -> String {
    let cut = |s: &str| s.chars().take(1000).collect::<String>();
    format!(
        "Compare the response to the ground truth and rate factual accuracy from 0 to 1.\nOnly respond with a number.\n\nResponse: {}\n\nGround Truth: {}\n\nAccuracy (0-1):",
        cut(response),
        cut(ground_truth)
    )
}

/// The first number in the answer, if it lies in [0, 1] (`85%` reads as 0.85).
pub(crate) fn parse_score(answer: &str) -> Option<f64> {
    let s = answer.trim();
    let start = s.find(|c: char| c.is_ascii_digit() || c == '.')?;
    let rest = &s[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let num = rest[..end].trim_end_matches('.');
    let mut v: f64 = num.parse().ok()?;
    if rest[end..].starts_with('%') {
        v /= 100.0;
    }
    (v.is_finite() && (0.0..=1.0).contains(&v)).then_some(v)
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum JudgeError {
    #[error("judge request failed: {0}")]
    Request(String),
    #[error("judge answered HTTP {0}")]
    Status(u16),
    #[error("judge answer has no choices[0].message.content")]
    Shape,
    #[error("judge answered {0:?}, not a number in [0, 1]")]
    Unparseable(String),
}

/// A configured judge.
#[derive(Debug, Clone)]
pub(crate) struct Judge {
    client: reqwest::Client,
    config: JudgeSection,
}

impl Judge {
    pub(crate) fn new(config: JudgeSection) -> Result<Judge, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_seconds.max(1)))
            .build()
            .map_err(|e| format!("building the judge HTTP client: {e}"))?;
        Ok(Judge { client, config })
    }

    pub(crate) async fn score(
        &self,
        response: &str,
        ground_truth: &str,
    ) -> Result<f64, JudgeError> {
        let body = serde_json::json!({
            "model": self.config.model,
            "messages": [{"role": "user", "content": prompt(response, ground_truth)}],
            "max_tokens": 5,
        });
        let mut req = self.client.post(&self.config.url).json(&body);
        if let Some(key) = &self.config.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| JudgeError::Request(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(JudgeError::Status(resp.status().as_u16()));
        }
        let v: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| JudgeError::Request(e.without_url().to_string()))?;
        let content = v["choices"][0]["message"]["content"]
            .as_str()
            .ok_or(JudgeError::Shape)?;
        parse_score(content)
            .ok_or_else(|| JudgeError::Unparseable(content.chars().take(64).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_parse_into_unit_interval_or_fail() {
        let cases = [
            ("0.8", Some(0.8)),
            (" 1 ", Some(1.0)),
            ("0", Some(0.0)),
            ("Accuracy: 0.75.", Some(0.75)),
            ("85%", Some(0.85)),
            ("1.5", None),
            ("7", None),
            ("high", None),
            ("", None),
            ("...", None),
        ];
        for (answer, want) in cases {
            assert_eq!(parse_score(answer), want, "{answer:?}");
        }
    }

    #[test]
    fn prompt_is_the_seeds_with_inputs_cut_to_1000_chars() {
        let p = prompt(&"é".repeat(1500), "truth");
        assert!(p.starts_with("Compare the response to the ground truth and rate factual accuracy from 0 to 1.\nOnly respond with a number.\n\nResponse: "));
        assert!(p.ends_with("\n\nGround Truth: truth\n\nAccuracy (0-1):"));
        assert_eq!(p.matches('é').count(), 1000);
    }
}
