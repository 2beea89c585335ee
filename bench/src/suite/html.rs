//! The HTML report: one self-contained page (no scripts, no external files) with inline
//! SVG charts — latency percentiles per level, gateway cost against concurrency, and
//! memory and load over time.

use std::fmt::Write as _;

use super::report::{LevelReport, Report};
use super::stats::Percentiles;

const COLOURS: [&str; 5] = ["#2563eb", "#16a34a", "#ea580c", "#9333ea", "#64748b"];

/// Escapes text for HTML bodies and attributes.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The whole page.
pub fn render(report: &Report) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Vocalized bench report</title>
<style>body{{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#0f172a;padding:0 1rem}}
h1{{font-size:1.6rem}}h2{{margin-top:2.5rem;border-bottom:1px solid #e2e8f0}}table{{border-collapse:collapse;margin:1rem 0}}
td,th{{padding:.25rem .7rem;text-align:right;border-bottom:1px solid #f1f5f9}}th:first-child,td:first-child{{text-align:left}}
.bad{{color:#b91c1c;font-weight:600}}.ok{{color:#15803d;font-weight:600}}code{{background:#f1f5f9;padding:.1rem .3rem;border-radius:4px}}
svg{{background:#fff;border:1px solid #e2e8f0;border-radius:6px;margin:.5rem 0}}svg text{{font:11px system-ui,sans-serif;fill:#334155}}</style></head><body>
<h1>Vocalized bench report</h1><p><code>{}</code><br>{} · {} cores · bench, fakes and gateway on one machine: the CPU figures are the gateway process's own.</p>"#,
        esc(&report.command),
        esc(&report.tool),
        report.cores
    );
    page.push_str(&summary_table(report));
    if report.levels.len() > 1 {
        page.push_str("<h2>Gateway cost against concurrency</h2>");
        page.push_str(&cost_chart(report));
    }
    for level in &report.levels {
        let _ = write!(
            page,
            "<h2>{} — {} calls</h2><p>ramp {}/s, {} s per call, provider delay {} ms: {} completed, {} failed.</p>",
            esc(&level.scenario),
            level.calls,
            level.ramp_per_sec,
            level.duration_secs,
            level.provider_delay_ms,
            level.calls_completed,
            level.calls_failed
        );
        if let Some(crash) = &level.gateway_crash {
            let _ = write!(page, "<p class=bad>The gateway exited: {}</p>", esc(crash));
        }
        page.push_str(&latency_chart(level));
        page.push_str(&latency_table(level));
        page.push_str(&frames_paragraph(level));
        if let Some(g) = &level.gateway
            && g.samples.len() > 1
        {
            page.push_str(&usage_chart(level));
        }
        if level.drift.len() > 2 {
            page.push_str(&drift_chart(level));
        }
        for failure in &level.failures {
            let _ = write!(page, "<p class=bad>{}</p>", esc(failure));
        }
    }
    page.push_str(
        "<h2>How these are measured</h2><p>Every 20 ms caller frame carries a stamp (stream, \
         sequence number, send time) in its first 20 bytes, written as it leaves the simulated \
         Twilio caller and read as it arrives at the fake provider; the provider stamps every \
         frame of its audio the same way and the caller reads them. Pass-through leaves µ-law \
         bytes untouched, so the difference is what the gateway (and loopback TCP) added. \
         Frames the provider sent within 250 ms before a barge-in or the hang-up may be \
         dropped on purpose and are not judged; every other frame that did not arrive is \
         lost. CPU is utime+stime of the gateway process from /proc, per second of call \
         time; memory is VmRSS under full load above the idle size, per concurrent call.</p>\
         </body></html>\n",
    );
    page
}

fn summary_table(report: &Report) -> String {
    let mut t = String::from(
        "<table><tr><th>scenario</th><th>calls</th><th>failed</th><th>lost frames</th>\
         <th>caller→provider p99</th><th>provider→caller p99</th><th>gateway setup p99</th>\
         <th>barge-in p99</th><th>CPU-µs / call-s</th><th>KB / call</th></tr>",
    );
    for l in &report.levels {
        let lost = l.frames.lost();
        let class = if lost == 0 && l.calls_failed == 0 {
            "ok"
        } else {
            "bad"
        };
        let (cpu, kb) = l.gateway.as_ref().map_or(("–".into(), "–".into()), |g| {
            (
                format!("{:.0}", g.cpu_us_per_call_second),
                format!("{:.0}", g.rss_kb_per_call),
            )
        });
        // "–" for a measure the scenario does not take, not a misleading 0.
        let p99 = |p: &Percentiles, decimals: usize| {
            if p.count == 0 {
                "–".to_owned()
            } else {
                format!("{:.decimals$} ms", p.p99_ms)
            }
        };
        let _ = write!(
            t,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class={class}>{lost}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{cpu}</td><td>{kb}</td></tr>",
            esc(&l.scenario),
            l.calls,
            l.calls_failed,
            p99(&l.caller_to_provider, 2),
            p99(&l.provider_to_caller, 2),
            p99(&l.setup_gateway, 1),
            p99(&l.barge_in, 2)
        );
    }
    t.push_str("</table>");
    t
}

fn latency_rows(level: &LevelReport) -> [(&'static str, Percentiles); 5] {
    [
        ("caller → provider", level.caller_to_provider),
        ("provider → caller", level.provider_to_caller),
        (
            "jitter (provider → caller)",
            level.provider_to_caller_jitter,
        ),
        ("barge-in reaction", level.barge_in),
        ("setup, gateway's part", level.setup_gateway),
    ]
}

fn latency_table(level: &LevelReport) -> String {
    let mut t = String::from(
        "<table><tr><th>ms</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>",
    );
    let mut rows = latency_rows(level).to_vec();
    rows.push((
        if level.scenario == "webrtc" {
            "setup, offer → first audio"
        } else {
            "setup, webhook → first audio"
        },
        level.setup,
    ));
    rows.push(("setup, offer → answer", level.setup_signalling));
    rows.push(("setup, answer → connected", level.setup_connect));
    rows.push(("failover gap (audio → audio)", level.failover_gap));
    rows.push(("provider cut → first audio", level.failover_recovery));
    rows.push((
        "caller frames sent during setup",
        level.caller_to_provider_during_setup,
    ));
    // A measure the scenario does not take (failover gap outside `failover`) is left out.
    for (name, p) in rows.into_iter().filter(|(_, p)| p.count > 0) {
        let _ = write!(
            t,
            "<tr><td>{name}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            p.count, p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.max_ms
        );
    }
    t.push_str("</table>");
    t
}

/// Grouped horizontal bars: one group per measure, one bar per percentile, on a log
/// scale so that 0.3 ms and 70 ms both read.
fn latency_chart(level: &LevelReport) -> String {
    // A measure the scenario does not take (barge-in on polite browser callers) is left out.
    let rows: Vec<_> = latency_rows(level)
        .into_iter()
        .filter(|(_, p)| p.count > 0)
        .collect();
    let quantiles = ["p50", "p90", "p99", "p99.9"];
    let (left, width, bar, gap) = (190.0, 820.0, 9.0, 14.0);
    let group = bar * quantiles.len() as f64 + gap;
    let height = 40.0 + group * rows.len() as f64;
    let max = rows.iter().map(|(_, p)| p.p999_ms).fold(1.0_f64, f64::max);
    // log10 from 0.01 ms to the largest value.
    let (lo, hi) = (-2.0_f64, max.log10().ceil().max(0.0));
    let x = |ms: f64| left + (ms.max(0.01).log10() - lo) / (hi - lo) * (width - left - 110.0);
    let mut svg = format!(
        r#"<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="latency percentiles">"#
    );
    let mut decade = lo;
    while decade <= hi {
        let ms = 10f64.powf(decade);
        let px = x(ms);
        let _ = write!(
            svg,
            r##"<line x1="{px:.1}" y1="10" x2="{px:.1}" y2="{:.1}" stroke="#e2e8f0"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{} ms</text>"##,
            height - 22.0,
            height - 8.0,
            if ms < 1.0 {
                format!("{ms}")
            } else {
                format!("{ms:.0}")
            }
        );
        decade += 1.0;
    }
    for (i, (name, p)) in rows.iter().enumerate() {
        let top = 12.0 + i as f64 * group;
        let _ = write!(
            svg,
            r#"<text x="6" y="{:.1}">{}</text>"#,
            top + 2.0 * bar,
            esc(name)
        );
        let values = [p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms];
        for (j, value) in values.iter().enumerate() {
            let y = top + j as f64 * bar;
            let w = if p.count == 0 { 0.0 } else { x(*value) - left };
            let _ = write!(
                svg,
                r#"<rect x="{left}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="{}"><title>{} {}: {:.3} ms</title></rect><text x="{:.1}" y="{:.1}">{} {:.2}</text>"#,
                bar - 1.5,
                COLOURS[j],
                esc(name),
                quantiles[j],
                value,
                left + w + 4.0,
                y + bar - 2.0,
                quantiles[j],
                value
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Line chart: CPU-µs per call-second and KB per call against the level's concurrency.
fn cost_chart(report: &Report) -> String {
    let points: Vec<(f64, f64, f64)> = report
        .levels
        .iter()
        .filter_map(|l| {
            let g = l.gateway.as_ref()?;
            Some((l.calls as f64, g.cpu_us_per_call_second, g.rss_kb_per_call))
        })
        .collect();
    if points.is_empty() {
        return "<p>No /proc figures (the gateway's pid was not known).</p>".into();
    }
    let series = [
        (
            "CPU-µs per call-second",
            points.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(),
        ),
        ("KB per call", points.iter().map(|p| (p.0, p.2)).collect()),
    ];
    let mut out = String::new();
    for (i, (name, data)) in series.iter().enumerate() {
        out.push_str(&line_chart(name, "concurrent calls", data, COLOURS[i]));
    }
    out
}

/// One series as a line with dots; the axes start at 0.
fn line_chart(title: &str, x_label: &str, data: &[(f64, f64)], colour: &str) -> String {
    let (w, h, left, bottom) = (520.0, 260.0, 60.0, 40.0);
    let x_max = data.iter().map(|d| d.0).fold(1.0_f64, f64::max);
    let y_max = data.iter().map(|d| d.1).fold(1e-9_f64, f64::max) * 1.1;
    let px = |x: f64| left + x / x_max * (w - left - 20.0);
    let py = |y: f64| h - bottom - y / y_max * (h - bottom - 30.0);
    let mut svg = format!(
        r##"<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{t}"><text x="{left}" y="18" style="font-weight:600">{t}</text>
<line x1="{left}" y1="{b}" x2="{r}" y2="{b}" stroke="#94a3b8"/><line x1="{left}" y1="30" x2="{left}" y2="{b}" stroke="#94a3b8"/>
<text x="{mid}" y="{xl}" text-anchor="middle">{xlab}</text><text x="{l2}" y="{b}" text-anchor="end">0</text><text x="{l2}" y="34" text-anchor="end">{ymax:.0}</text>"##,
        t = esc(title),
        b = h - bottom,
        r = w - 10.0,
        mid = (w + left) / 2.0,
        xl = h - 6.0,
        xlab = esc(x_label),
        l2 = left - 4.0,
        ymax = y_max
    );
    let path: Vec<String> = data
        .iter()
        .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
        .collect();
    let _ = write!(
        svg,
        r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
        path.join(" ")
    );
    // Few points (levels): label each. Many (a time series): a plain line, six ticks.
    if data.len() <= 12 {
        for (x, y) in data {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{colour}"><title>{x}: {y:.1}</title></circle><text x="{:.1}" y="{:.1}" text-anchor="middle">{x}</text><text x="{:.1}" y="{:.1}" text-anchor="middle">{y:.0}</text>"#,
                px(*x),
                py(*y),
                px(*x),
                h - bottom + 14.0,
                px(*x),
                py(*y) - 8.0
            );
        }
    } else {
        for i in 0..=5 {
            let x = x_max * f64::from(i) / 5.0;
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{x:.0}</text>"#,
                px(x),
                h - bottom + 14.0
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// RSS and active calls over the run.
fn usage_chart(level: &LevelReport) -> String {
    let Some(g) = &level.gateway else {
        return String::new();
    };
    let rss: Vec<(f64, f64)> = g
        .samples
        .iter()
        .map(|s| (s.t_s, s.rss_kb as f64 / 1024.0))
        .collect();
    let active: Vec<(f64, f64)> = g
        .samples
        .iter()
        .map(|s| (s.t_s, s.active_calls as f64))
        .collect();
    let cpu: Vec<(f64, f64)> = g.samples.iter().map(|s| (s.t_s, s.cpu_percent)).collect();
    let mut out = String::new();
    out.push_str(&line_chart(
        "gateway RSS (MB) over time (s)",
        "seconds",
        &rss,
        COLOURS[0],
    ));
    out.push_str(&line_chart(
        "gateway CPU (% of a core) over time (s)",
        "seconds",
        &cpu,
        COLOURS[2],
    ));
    out.push_str(&line_chart(
        "active calls over time (s)",
        "seconds",
        &active,
        COLOURS[1],
    ));
    out
}

/// p99 per direction over the run, one point per drift window.
fn drift_chart(level: &LevelReport) -> String {
    let c2p: Vec<(f64, f64)> = level
        .drift
        .iter()
        .map(|d| (d.t_s as f64, d.caller_to_provider_p99_ms))
        .collect();
    let p2c: Vec<(f64, f64)> = level
        .drift
        .iter()
        .map(|d| (d.t_s as f64, d.provider_to_caller_p99_ms))
        .collect();
    let mut out = line_chart(
        "caller → provider p99 (ms) over time",
        "seconds",
        &c2p,
        COLOURS[0],
    );
    out.push_str(&line_chart(
        "provider → caller p99 (ms) over time",
        "seconds",
        &p2c,
        COLOURS[1],
    ));
    out
}

fn frames_paragraph(level: &LevelReport) -> String {
    let f = &level.frames;
    let class = if f.lost() == 0 { "ok" } else { "bad" };
    if level.scenario == "webrtc" {
        let delay = level.signal_delay.unwrap_or_default();
        return format!(
            "<p class={class}>Frames caller → provider (by position): {} sent, {} received, {} lost, {} unattributed. \
             Provider → caller: {} sent, {} heard, {} lost, {} late (over 20 ms behind, or after a gap), {} not judged (hang-up), \
             {} playout gaps inside replies, {} runs of audio before any reply. Latencies count samples; the gateway's resamplers and Opus \
             encoder add a fixed {:.1} ms (caller → provider) and {:.1} ms (provider → caller) of signal delay \
             on top.</p>",
            f.caller_sent,
            f.caller_received,
            f.caller_lost,
            f.cross_wired,
            f.provider_sent,
            f.provider_received,
            f.provider_lost,
            f.provider_late,
            f.provider_exempt,
            f.provider_split_runs,
            f.provider_unstamped,
            delay.caller_to_provider_ms,
            delay.provider_to_caller_ms,
        );
    }
    format!(
        "<p class={class}>Frames caller → provider: {} sent, {} received, {} lost. Provider → caller: {} sent, \
         {} received, {} lost, {} not judged (barge-in or hang-up). {} unstamped, {} duplicated, {} reordered, \
         {} cross-wired; {} responses cancelled by barge-in, {} speech starts with nothing to clear.</p>",
        f.caller_sent,
        f.caller_received,
        f.caller_lost,
        f.provider_sent,
        f.provider_received,
        f.provider_lost,
        f.provider_exempt,
        f.caller_unstamped + f.provider_unstamped,
        f.duplicates,
        f.reordered,
        f.cross_wired,
        f.responses_cancelled,
        level.speech_starts_without_clear
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc(r#"<a href="x">&</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn an_empty_report_still_renders_a_whole_page() {
        let report = Report {
            tool: "t".into(),
            command: "vocalized-bench <x>".into(),
            started_unix_s: 0,
            cores: 2,
            levels: Vec::new(),
        };
        let page = render(&report);
        assert!(page.starts_with("<!doctype html>") && page.trim_end().ends_with("</html>"));
        assert!(page.contains("vocalized-bench &lt;x&gt;"));
    }
}
