//! Pricing usage into micro-dollars. Integer arithmetic only: prices are micro-dollars per
//! million tokens (or per minute), and each line is rounded half-up to a whole micro-dollar
//! once, so the same usage always costs the same and sums never drift.
//!
//! Providers that bill by connected minute (ElevenLabs, Deepgram: the catalogue's
//! `session_per_minute_micros`) are charged by [`session_line`]: the session's connected
//! milliseconds pro rata, rounded half-up once per session, so 60 s costs exactly the
//! minute price and 90.5 s at $0.10 costs 150 833 micro-dollars.
//!
//! Counts come from provider frames, which may be broken or hostile: arithmetic saturates
//! (at `i64::MAX` for quantities, at [`MAX_LINE_COST_MICROS`] for a line's cost) and is
//! never negative.

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

/// The most one priced line can cost: $100 million, far above any real call, and low
/// enough that the sums billing takes over a workspace's lines (`SUM(final_cost_micros)`)
/// stay inside an i64 even with tens of thousands of saturated lines.
pub const MAX_LINE_COST_MICROS: i64 = 100_000_000_000_000;

/// `numerator / denominator` rounded half-up, for a non-negative numerator and a positive
/// denominator; saturates at `i64::MAX`.
fn div_round(numerator: i128, denominator: i128) -> i64 {
    let q = numerator.saturating_add(denominator / 2) / denominator;
    i64::try_from(q).unwrap_or(i64::MAX)
}

fn line(
    resource_type: &'static str,
    quantity: u64,
    unit: &'static str,
    price: i64,
    per: i64,
) -> Option<Line> {
    (quantity > 0).then(|| {
        // u64::MAX x i64::MAX still fits in an i128; the product saturates regardless.
        let cost = div_round(
            i128::from(quantity).saturating_mul(i128::from(price.max(0))),
            i128::from(per.max(1)),
        );
        Line {
            resource_type,
            quantity: i64::try_from(quantity).unwrap_or(i64::MAX),
            unit,
            unit_cost_micros: price,
            per,
            total_cost_micros: cost.min(MAX_LINE_COST_MICROS),
        }
    })
}

/// A per-minute provider's connected session of `duration_ms`, at `per_minute_micros`
/// (`realtime_models.session_per_minute_micros`); `None` for no time or no price.
pub fn session_line(duration_ms: u64, per_minute_micros: i64) -> Option<Line> {
    if per_minute_micros <= 0 {
        return None;
    }
    line("session_time", duration_ms, "ms", per_minute_micros, 60_000)
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
/// Saturates at `i64::MAX`; costs and markups are never negative.
pub fn with_markup(total_micros: i64, markup_bps: i64) -> i64 {
    let total_micros = total_micros.max(0);
    let markup = div_round(
        i128::from(total_micros) * i128::from(markup_bps.max(0)),
        10_000,
    );
    total_micros.saturating_add(markup)
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
    fn absurd_reported_usage_saturates_and_is_never_negative() {
        // A broken or hostile provider frame: every count at u64::MAX.
        let usage = Usage {
            input_text_tokens: u64::MAX,
            input_audio_tokens: u64::MAX,
            cached_input_tokens: u64::MAX,
            output_text_tokens: u64::MAX,
            output_audio_tokens: u64::MAX,
            audio_input_ms: u64::MAX,
            audio_output_ms: u64::MAX,
        };
        let p = ModelPrices {
            audio_input_per_minute: 100_000,
            audio_output_per_minute: 100_000,
            ..gpt_realtime()
        };
        let lines = price(&usage, &p);
        assert!(!lines.is_empty());
        for l in &lines {
            assert!(l.quantity > 0, "{l:?}");
            assert!(l.total_cost_micros > 0, "{l:?}");
            assert!(l.total_cost_micros <= MAX_LINE_COST_MICROS, "{l:?}");
            assert!(with_markup(l.total_cost_micros, 100_000) > 0);
        }
        assert_eq!(with_markup(i64::MAX, 2000), i64::MAX);
    }

    #[test]
    fn a_connected_minute_costs_the_session_price_pro_rata_per_ms() {
        // ElevenLabs' seed price: $0.10 per connected minute.
        let minute = session_line(60_000, 100_000).unwrap();
        assert_eq!(minute.total_cost_micros, 100_000);
        assert_eq!((minute.quantity, minute.unit), (60_000, "ms"));
        assert_eq!(minute.resource_type, "session_time");
        // 90.5 s -> 150833.33 -> 150833; 3 ms -> 5 exactly; 1 ms at $0.075 -> 1.25 -> 1.
        assert_eq!(
            session_line(90_500, 100_000).unwrap().total_cost_micros,
            150_833
        );
        assert_eq!(session_line(3, 100_000).unwrap().total_cost_micros, 5);
        assert_eq!(session_line(1, 75_000).unwrap().total_cost_micros, 1);
        assert_eq!(session_line(0, 100_000), None);
        assert_eq!(session_line(60_000, 0), None, "no price, no line");
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
