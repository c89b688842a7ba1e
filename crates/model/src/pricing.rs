//! The price table: cost of a call from its tokens when the caller sent none.
//!
//! Matching: an exact model name first, then the longest price name that is a
//! prefix of the model (`gpt-4o-2024-08-06` prices as `gpt-4o`). Among the
//! entries for that name, the one with the latest `valid_from_ms` not after the
//! call's timestamp applies. Cached input tokens are a subset of prompt tokens
//! and are billed once, at the cached price; reasoning tokens are a subset of
//! completion tokens, billed at the reasoning price when one is set.

use serde::{Deserialize, Serialize};

use crate::LlmCall;

/// One dated price for a model (or model-name prefix). Prices are USD per
/// million tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Model name or prefix.
    pub model: String,
    /// Prompt tokens, USD / 1M.
    pub input_per_mtok: f64,
    /// Completion tokens, USD / 1M.
    pub output_per_mtok: f64,
    /// Cached prompt tokens, USD / 1M; default: `input_per_mtok`.
    #[serde(default)]
    pub cached_input_per_mtok: Option<f64>,
    /// Reasoning tokens, USD / 1M; default: `output_per_mtok`.
    #[serde(default)]
    pub reasoning_per_mtok: Option<f64>,
    /// First instant this price applies, Unix ms; default 0 (always).
    #[serde(default)]
    pub valid_from_ms: i64,
}

impl Price {
    pub fn new(model: &str, input_per_mtok: f64, output_per_mtok: f64) -> Price {
        Price {
            model: model.to_string(),
            input_per_mtok,
            output_per_mtok,
            cached_input_per_mtok: None,
            reasoning_per_mtok: None,
            valid_from_ms: 0,
        }
    }

    fn cached(mut self, per_mtok: f64) -> Price {
        self.cached_input_per_mtok = Some(per_mtok);
        self
    }

    /// Cost of `call` at this price, USD.
    pub fn cost(&self, call: &LlmCall) -> f64 {
        let cached = call.cached_input_tokens.min(call.prompt_tokens);
        let fresh_input = call.prompt_tokens - cached;
        let reasoning = call.reasoning_tokens.min(call.completion_tokens);
        let plain_output = call.completion_tokens - reasoning;
        let per = |tokens: u64, price: f64| tokens as f64 * price / 1_000_000.0;
        per(fresh_input, self.input_per_mtok)
            + per(
                cached,
                self.cached_input_per_mtok.unwrap_or(self.input_per_mtok),
            )
            + per(plain_output, self.output_per_mtok)
            + per(
                reasoning,
                self.reasoning_per_mtok.unwrap_or(self.output_per_mtok),
            )
    }
}

/// A set of dated prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceTable {
    prices: Vec<Price>,
}

impl Default for PriceTable {
    /// The seed's five models at the seed's prices, plus other current models.
    fn default() -> PriceTable {
        PriceTable::new(vec![
            // The seed's table (its per-1k prices × 1000).
            Price::new("gpt-4o", 2.5, 10.0).cached(1.25),
            Price::new("gpt-4o-mini", 0.15, 0.6).cached(0.075),
            Price::new("gpt-4-turbo", 10.0, 30.0),
            Price::new("claude-3-5-sonnet", 3.0, 15.0).cached(0.3),
            Price::new("claude-3-opus", 15.0, 75.0).cached(1.5),
            // Other current models.
            Price::new("gpt-4.1", 2.0, 8.0).cached(0.5),
            Price::new("gpt-4.1-mini", 0.4, 1.6).cached(0.1),
            Price::new("gpt-4.1-nano", 0.1, 0.4).cached(0.025),
            Price::new("o1", 15.0, 60.0).cached(7.5),
            Price::new("o3", 2.0, 8.0).cached(0.5),
            Price::new("o3-mini", 1.1, 4.4).cached(0.55),
            Price::new("o4-mini", 1.1, 4.4).cached(0.275),
            Price::new("gpt-3.5-turbo", 0.5, 1.5),
            Price::new("claude-3-5-haiku", 0.8, 4.0).cached(0.08),
            Price::new("claude-3-7-sonnet", 3.0, 15.0).cached(0.3),
            Price::new("claude-sonnet-4", 3.0, 15.0).cached(0.3),
            Price::new("claude-opus-4", 15.0, 75.0).cached(1.5),
            Price::new("claude-3-haiku", 0.25, 1.25).cached(0.03),
            Price::new("gemini-1.5-pro", 1.25, 5.0),
            Price::new("gemini-1.5-flash", 0.075, 0.3),
            Price::new("gemini-2.0-flash", 0.1, 0.4).cached(0.025),
            Price::new("gemini-2.5-pro", 1.25, 10.0).cached(0.31),
            Price::new("gemini-2.5-flash", 0.3, 2.5).cached(0.075),
        ])
    }
}

impl PriceTable {
    pub fn new(prices: Vec<Price>) -> PriceTable {
        PriceTable { prices }
    }

    /// A table with `overrides` layered over `self`: an override with the same
    /// model and `valid_from_ms` replaces the built-in entry.
    pub fn with_overrides(mut self, overrides: Vec<Price>) -> PriceTable {
        for o in overrides {
            self.prices
                .retain(|p| !(p.model == o.model && p.valid_from_ms == o.valid_from_ms));
            self.prices.push(o);
        }
        self
    }

    pub fn prices(&self) -> &[Price] {
        &self.prices
    }

    /// The price that applies to `model` at `ts_ms`, if any.
    pub fn lookup(&self, model: &str, ts_ms: i64) -> Option<&Price> {
        let name = if self.prices.iter().any(|p| p.model == model) {
            model
        } else {
            self.prices
                .iter()
                .filter(|p| model.starts_with(p.model.as_str()))
                .map(|p| p.model.as_str())
                .max_by_key(|m| m.len())?
        };
        self.prices
            .iter()
            .filter(|p| p.model == name && p.valid_from_ms <= ts_ms)
            .max_by_key(|p| p.valid_from_ms)
    }

    /// Cost of `call`, USD: `None` when no price applies (unknown, never 0).
    pub fn cost(&self, call: &LlmCall) -> Option<f64> {
        self.lookup(&call.model, call.timestamp_ms)
            .map(|p| p.cost(call))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(model: &str, prompt: u64, completion: u64) -> LlmCall {
        LlmCall {
            model: model.into(),
            prompt_tokens: prompt,
            completion_tokens: completion,
            timestamp_ms: 1_700_000_000_000,
            ..LlmCall::default()
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn seed_models_cost_what_the_seed_computes() {
        let t = PriceTable::default();
        // seed: 1000/1000*0.0025 + 500/1000*0.01
        assert!(close(
            t.cost(&call("gpt-4o", 1000, 500)).unwrap(),
            0.0025 + 0.005
        ));
        assert!(close(
            t.cost(&call("claude-3-opus", 2000, 100)).unwrap(),
            2.0 * 0.015 + 0.1 * 0.075
        ));
    }

    #[test]
    fn longest_prefix_wins_and_unknown_is_none() {
        let t = PriceTable::default();
        assert_eq!(t.lookup("gpt-4o-2024-08-06", 0).unwrap().model, "gpt-4o");
        assert_eq!(
            t.lookup("gpt-4o-mini-2024-07-18", 0).unwrap().model,
            "gpt-4o-mini"
        );
        assert_eq!(t.cost(&call("my-local-llama", 10, 10)), None);
    }

    #[test]
    fn cached_tokens_are_billed_once_at_the_cached_price() {
        let t = PriceTable::default();
        let mut c = call("gpt-4o", 1_000_000, 0);
        c.cached_input_tokens = 400_000;
        assert!(close(t.cost(&c).unwrap(), 0.6 * 2.5 + 0.4 * 1.25));
    }

    #[test]
    fn dated_prices_apply_from_their_valid_from() {
        let mut later = Price::new("gpt-4o", 1.0, 1.0);
        later.valid_from_ms = 1_750_000_000_000;
        let t = PriceTable::default().with_overrides(vec![later]);
        let before = call("gpt-4o", 1_000_000, 0);
        let mut after = before.clone();
        after.timestamp_ms = 1_760_000_000_000;
        assert!(close(t.cost(&before).unwrap(), 2.5));
        assert!(close(t.cost(&after).unwrap(), 1.0));
    }
}
