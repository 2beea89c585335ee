//! Pricing usage into micro-dollars. Integer arithmetic only: prices are micro-dollars per
//! million tokens (or per minute), and each line is rounded half-up to a whole micro-dollar
//! once, so the same usage always costs the same and sums never drift.

use vocalized_shared::events::Usage;

/// A model's prices (a `realtime_models` row).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelPrices {
    pub text_input_per_mtok: i64,
    pub text_output_per_mtok: i64,
    pub audio_input_per_mtok: i64,
    pub audio_output_per_mtok: i64,
    pub cached_text_input_per_mtok: i64,
    pub cached_audio_input_per_mtok: i64,
    pub audio_input_per_minute: i64,
    pub audio_output_per_minute: i64,
}

/// One priced line of usage, ready to become a `usage_records` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub resource_type: &'static str,
    pub quantity: i64,
    pub unit: &'static str,
    /// Price per `per` units, in micro-dollars.
    pub unit_cost_micros: i64,
    pub per: i64,
    pub total_cost_micros: i64,
}

fn div_round(numerator: i128, denominator: i128) -> i64 {
    ((numerator + denominator / 2) / denominator) as i64
}

fn line(
    resource_type: &'static str,
    quantity: u64,
    unit: &'static str,
    price: i64,
    per: i64,
) -> Option<Line> {
    (quantity > 0).then(|| Line {
        resource_type,
        quantity: quantity as i64,
        unit,
        unit_cost_micros: price,
        per,
        total_cost_micros: div_round(quantity as i128 * price as i128, per as i128),
    })
}

/// Prices a usage report. Cached tokens are a subset of input tokens (protocols.md §2.4):
/// they are charged at the cached price and the rest at the full price. Cached tokens are
/// not split by modality in every report, so they are priced as cached audio when the
/// report has audio input and as cached text otherwise.
pub fn price(usage: &Usage, p: &ModelPrices) -> Vec<Line> {
    const MTOK: i64 = 1_000_000;
    const MINUTE_MS: i64 = 60_000;
    let cached = usage.cached_input_tokens;
    let (cached_audio, cached_text) = if usage.input_audio_tokens > 0 {
        let a = cached.min(usage.input_audio_tokens);
        (a, (cached - a).min(usage.input_text_tokens))
    } else {
        (0, cached.min(usage.input_text_tokens))
    };
    [
        line(
            "text_input_tokens",
            usage.input_text_tokens - cached_text,
            "tokens",
            p.text_input_per_mtok,
            MTOK,
        ),
        line(
            "cached_text_input_tokens",
            cached_text,
            "tokens",
            p.cached_text_input_per_mtok,
            MTOK,
        ),
        line(
            "audio_input_tokens",
            usage.input_audio_tokens - cached_audio,
            "tokens",
            p.audio_input_per_mtok,
            MTOK,
        ),
        line(
            "cached_audio_input_tokens",
            cached_audio,
            "tokens",
            p.cached_audio_input_per_mtok,
            MTOK,
        ),
        line(
            "text_output_tokens",
            usage.output_text_tokens,
            "tokens",
            p.text_output_per_mtok,
            MTOK,
        ),
        line(
            "audio_output_tokens",
            usage.output_audio_tokens,
            "tokens",
            p.audio_output_per_mtok,
            MTOK,
        ),
        line(
            "audio_input_time",
            usage.audio_input_ms,
            "ms",
            p.audio_input_per_minute,
            MINUTE_MS,
        ),
        line(
            "audio_output_time",
            usage.audio_output_ms,
            "ms",
            p.audio_output_per_minute,
            MINUTE_MS,
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The platform's markup on a cost, in basis points, rounded half-up.
pub fn with_markup(total_micros: i64, markup_bps: i64) -> i64 {
    total_micros + div_round(total_micros as i128 * markup_bps as i128, 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpt_realtime() -> ModelPrices {
        ModelPrices {
            text_input_per_mtok: 4_000_000,
            text_output_per_mtok: 16_000_000,
            audio_input_per_mtok: 32_000_000,
            audio_output_per_mtok: 64_000_000,
            cached_text_input_per_mtok: 400_000,
            cached_audio_input_per_mtok: 400_000,
            ..ModelPrices::default()
        }
    }

    #[test]
    fn the_reference_response_done_prices_exactly() {
        // protocols.md §2.4's example usage.
        let usage = Usage {
            input_text_tokens: 420,
            input_audio_tokens: 900,
            cached_input_tokens: 640,
            output_text_tokens: 40,
            output_audio_tokens: 160,
            ..Usage::default()
        };
        let lines = price(&usage, &gpt_realtime());
        let total: i64 = lines.iter().map(|l| l.total_cost_micros).sum();
        // 420 text @4 = 1680; 260 audio @32 = 8320; 640 cached audio @0.4 = 256;
        // 40 text out @16 = 640; 160 audio out @64 = 10240.
        assert_eq!(total, 1680 + 8320 + 256 + 640 + 10240);
        assert!(lines.iter().all(|l| l.quantity > 0));
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn rounding_is_half_up_per_line_and_per_minute_prices_work() {
        let p = ModelPrices {
            text_input_per_mtok: 1_500_000,
            audio_input_per_minute: 100_000,
            ..ModelPrices::default()
        };
        let usage = Usage {
            input_text_tokens: 1,   // 1.5 micro-dollars -> 2
            audio_input_ms: 90_000, // 1.5 minutes at $0.10 -> 150000
            ..Usage::default()
        };
        let lines = price(&usage, &p);
        assert_eq!(lines[0].total_cost_micros, 2);
        assert_eq!(lines[1].total_cost_micros, 150_000);
    }

    #[test]
    fn markup_in_basis_points() {
        assert_eq!(with_markup(1_000_000, 2000), 1_200_000);
        assert_eq!(with_markup(3, 2000), 4); // 0.6 rounds up
        assert_eq!(with_markup(0, 2000), 0);
        // Large sums stay exact.
        assert_eq!(with_markup(9_007_199_254_740_993, 0), 9_007_199_254_740_993);
    }
}
