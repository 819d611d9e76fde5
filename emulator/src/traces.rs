//! Demand traces: real public traces as per-minute series, and their replay with
//! time-scaling, amplitude scaling and looping.
//!
//! Formats (recognised by their header line; gzip is detected by its magic bytes):
//! - Azure LLM inference 2023, raw (`TIMESTAMP,ContextTokens,GeneratedTokens`): requests or
//!   tokens per minute;
//! - Azure LLM inference 2023, per minute (`trace,minute_start,minute_index,requests,…`),
//!   one of its traces (`conv` or `code`);
//! - Azure Functions 2019 sample (`HashOwner,HashApp,HashFunction,Trigger,480,…`): invocations
//!   per minute summed over the functions;
//! - Alibaba diffusion serving 2024, raw (`gmt_create,…`) or per minute (`minute_start,requests`);
//! - a plain `timestamp,value` CSV (timestamps as datetimes or as minute numbers).

use std::io::Read;

use crate::kql::value::{TICKS_PER_SECOND, parse_datetime};

/// What a trace counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Requests (or invocations) per minute.
    Requests,
    /// Tokens (prompt + generated) per minute.
    Tokens,
}

/// A demand trace: one value per minute, from its first minute.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Where it came from.
    pub name: String,
    /// What it counts.
    pub unit: Unit,
    /// Values per minute.
    pub per_minute: Vec<f64>,
    /// Whether the first and last minute are counted from request timestamps, so that the
    /// recording covers them only in part.
    pub partial_edges: bool,
}

impl Trace {
    /// The minutes the recording covers in full: without the partial first and last minute
    /// when the trace has them.
    pub fn measured(&self) -> &[f64] {
        match self.per_minute.len() {
            n if self.partial_edges && n > 2 => &self.per_minute[1..n - 1],
            _ => &self.per_minute,
        }
    }
}

/// A trace that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be read.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Its content is not a known format.
    #[error("line {line}: {reason}")]
    Format {
        /// 1-based line.
        line: usize,
        /// What was wrong.
        reason: String,
    },
}

fn bad(line: usize, reason: impl Into<String>) -> TraceError {
    TraceError::Format { line, reason: reason.into() }
}

/// The longest trace read: a year of minutes (two timestamps years apart are a mistake, not a
/// trace, and would fill memory with empty minutes).
pub const MAX_MINUTES: usize = 366 * 24 * 60;
/// The largest count a minute may hold (a million times the busiest real trace shipped).
pub const MAX_PER_MINUTE: f64 = 1e12;

/// A count of line `line`: a number, finite, zero or more and at most [`MAX_PER_MINUTE`].
fn count(cell: &str, line: usize, what: &str) -> Result<f64, TraceError> {
    let v: f64 = cell.trim().parse().map_err(|_| bad(line, format!("bad {what} {cell:?}: not a number")))?;
    if !(0.0..=MAX_PER_MINUTE).contains(&v) {
        return Err(bad(line, format!("bad {what} {cell:?}: a count must be finite, at least 0 and at most {MAX_PER_MINUTE:e}")));
    }
    Ok(v)
}

/// Minutes from `first` to `last`, within [`MAX_MINUTES`].
fn span(first: i64, last: i64) -> Result<usize, TraceError> {
    let minutes = last.saturating_sub(first).saturating_add(1);
    if minutes > MAX_MINUTES as i64 {
        return Err(bad(
            2,
            format!(
                "the timestamps span {minutes} minutes, more than a year ({MAX_MINUTES}); are two of them far apart by mistake?"
            ),
        ));
    }
    Ok(minutes as usize)
}

/// Options of parsing: which sub-trace of a multi-trace file, and what to count.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    /// For the per-minute LLM file: `conv` or `code`.
    pub select: String,
    /// Count requests or tokens (the LLM traces have both).
    pub unit: Unit,
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self { select: "conv".into(), unit: Unit::Requests }
    }
}

/// Parse a trace from bytes (plain or gzip CSV).
///
/// # Errors
/// An unknown header, a malformed line, bad gzip.
pub fn parse(name: &str, bytes: &[u8], options: &ParseOptions) -> Result<Trace, TraceError> {
    let text = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = String::new();
        flate2::read::GzDecoder::new(bytes).read_to_string(&mut out)?;
        out
    } else {
        String::from_utf8(bytes.to_vec()).map_err(|_| bad(1, "not UTF-8"))?
    };
    let mut lines = text.lines();
    let header = lines.next().ok_or_else(|| bad(1, "empty file"))?.trim().trim_start_matches('\u{feff}');
    let partial_edges = header.starts_with("TIMESTAMP,ContextTokens,GeneratedTokens") || header.starts_with("gmt_create,");
    let per_minute = if header.starts_with("TIMESTAMP,ContextTokens,GeneratedTokens") {
        bucket(lines, 2, |cols, line| {
            let ts = parse_datetime(cols[0]).ok_or_else(|| bad(line, format!("bad timestamp {:?}", cols[0])))?;
            let weight = match options.unit {
                Unit::Requests => 1.0,
                Unit::Tokens => {
                    let n = |i: usize| count(cols.get(i).copied().unwrap_or(""), line, "token count");
                    n(1)? + n(2)?
                }
            };
            Ok((ts, weight))
        })?
    } else if header.starts_with("trace,minute_start,minute_index,requests") {
        let mut out = Vec::new();
        for (i, l) in lines.enumerate() {
            let cols: Vec<&str> = l.split(',').collect();
            if cols.len() < 6 {
                return Err(bad(i + 2, "expected 6 columns"));
            }
            if cols[0] != options.select {
                continue;
            }
            let index: usize = cols[2].parse().map_err(|_| bad(i + 2, "bad minute_index"))?;
            if index >= MAX_MINUTES {
                return Err(bad(i + 2, format!("minute_index {index} is past a year of minutes ({MAX_MINUTES})")));
            }
            let value: f64 = match options.unit {
                Unit::Requests => count(cols[3], i + 2, "requests")?,
                Unit::Tokens => count(cols[4], i + 2, "context_tokens")? + count(cols[5], i + 2, "generated_tokens")?,
            };
            if out.len() <= index {
                out.resize(index + 1, 0.0);
            }
            out[index] = value;
        }
        if out.is_empty() {
            return Err(bad(1, format!("no rows for trace {:?}", options.select)));
        }
        out
    } else if header.starts_with("HashOwner,HashApp,HashFunction,Trigger") {
        let minutes = header.split(',').count() - 4;
        let mut out = vec![0.0; minutes];
        for (i, l) in lines.enumerate() {
            for (m, cell) in l.split(',').skip(4).enumerate().take(minutes) {
                out[m] += count(cell, i + 2, "invocation count")?;
            }
        }
        out
    } else if header.starts_with("gmt_create,") {
        bucket(lines, 1, |cols, line| Ok((parse_datetime(cols[0]).ok_or_else(|| bad(line, "bad gmt_create"))?, 1.0)))?
    } else {
        // minute_start,requests — or any timestamp,value pair.
        let mut points: Vec<(i64, f64)> = Vec::new();
        for (i, l) in lines.enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            let (t, v) = l.split_once(',').ok_or_else(|| bad(i + 2, "expected timestamp,value"))?;
            let minute = match parse_datetime(t.trim()) {
                Some(ticks) => ticks.div_euclid(60 * TICKS_PER_SECOND),
                None => t
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|m| m.is_finite() && m.abs() < 1e15)
                    .ok_or_else(|| bad(i + 2, format!("bad timestamp {t:?}")))? as i64,
            };
            let value = count(v.split(',').next().unwrap_or(""), i + 2, "value")?;
            points.push((minute, value));
        }
        let first = points.iter().map(|p| p.0).min().ok_or_else(|| bad(2, "no data"))?;
        let last = points.iter().map(|p| p.0).max().unwrap_or(first);
        let mut out = vec![0.0; span(first, last)?];
        for (m, v) in points {
            out[(m - first) as usize] += v;
        }
        out
    };
    Ok(Trace { name: name.to_string(), unit: options.unit, per_minute, partial_edges })
}

/// Sum weights into per-minute buckets from the first timestamp's minute.
fn bucket<'a>(
    lines: impl Iterator<Item = &'a str>,
    min_cols: usize,
    row: impl Fn(&[&str], usize) -> Result<(i64, f64), TraceError>,
) -> Result<Vec<f64>, TraceError> {
    let mut points = Vec::new();
    for (i, l) in lines.enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = l.split(',').collect();
        if cols.len() < min_cols {
            return Err(bad(i + 2, format!("expected at least {min_cols} columns")));
        }
        points.push(row(&cols, i + 2)?);
    }
    let minute = |t: i64| t.div_euclid(60 * TICKS_PER_SECOND);
    let first = points.iter().map(|p| minute(p.0)).min().ok_or_else(|| bad(2, "no data"))?;
    let last = points.iter().map(|p| minute(p.0)).max().unwrap_or(first);
    let mut out = vec![0.0; span(first, last)?];
    for (t, w) in points {
        out[(minute(t) - first) as usize] += w;
    }
    Ok(out)
}

/// Read a trace file.
///
/// # Errors
/// As [`parse`], and IO errors.
pub fn load(path: &std::path::Path, options: &ParseOptions) -> Result<Trace, TraceError> {
    let bytes = std::fs::read(path)?;
    parse(&path.to_string_lossy(), &bytes, options)
}

/// The traces that ship with fleetpilot (CC-BY 4.0, Azure Public Dataset; see the README).
pub mod embedded {
    /// Azure LLM inference 2023, conversation service, raw requests.
    pub const AZURE_LLM_CONV: &[u8] = include_bytes!("../data/traces/azure_llm_2023_conv.csv");
    /// Azure LLM inference 2023, code service, raw requests.
    pub const AZURE_LLM_CODE: &[u8] = include_bytes!("../data/traces/azure_llm_2023_code.csv");
    /// Azure LLM inference 2023, both services per minute.
    pub const AZURE_LLM_PER_MINUTE: &[u8] = include_bytes!("../data/traces/azure_llm_2023_per_minute.csv");
    /// Azure Functions 2019, a 500-function sample, 08:00–16:00, gzip.
    pub const AZURE_FUNCTIONS_2019: &[u8] = include_bytes!("../data/traces/azure_functions_2019_sample500_0800_1600.csv.gz");
}

/// How a trace is replayed.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    /// The trace.
    pub trace: std::sync::Arc<Trace>,
    /// Virtual minutes per trace minute (60 replays an hour's shape over 2.5 days… or
    /// `24.0 * 60.0 / len` spreads the whole trace over a day).
    pub time_scale: f64,
    /// Multiplies every value.
    pub amplitude: f64,
    /// Start over at the end (otherwise demand is 0 after it).
    pub looped: bool,
}

impl Replay {
    /// Demand at `minutes` virtual minutes after the replay started: linear interpolation
    /// between the trace's minutes, so a stretched trace has no steps.
    pub fn demand_at(&self, minutes: f64) -> f64 {
        let len = self.trace.per_minute.len();
        if len == 0 || minutes < 0.0 {
            return 0.0;
        }
        let mut x = minutes / self.time_scale.max(1e-9);
        if self.looped {
            x %= len as f64;
        } else if x >= len as f64 {
            return 0.0;
        }
        let i = x.floor() as usize;
        let frac = x - i as f64;
        let a = self.trace.per_minute[i];
        let b = if i + 1 < len {
            self.trace.per_minute[i + 1]
        } else if self.looped {
            self.trace.per_minute[0]
        } else {
            a
        };
        (a + (b - a) * frac) * self.amplitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(t: &Trace) -> f64 {
        t.per_minute.iter().sum()
    }

    #[test]
    fn the_shipped_azure_llm_traces_match_their_published_counts() {
        let conv = parse("conv", embedded::AZURE_LLM_CONV, &ParseOptions::default()).unwrap();
        assert_eq!(sum(&conv), 19_366.0);
        assert_eq!(conv.per_minute.len(), 60, "18:15 → 19:14");
        let code = parse("code", embedded::AZURE_LLM_CODE, &ParseOptions::default()).unwrap();
        assert_eq!(sum(&code), 8_819.0);
        assert_eq!(code.per_minute.len(), 58);
        let per_minute_conv = parse("pm", embedded::AZURE_LLM_PER_MINUTE, &ParseOptions::default()).unwrap();
        assert_eq!(per_minute_conv.per_minute, conv.per_minute, "the derived file counts the raw one");
        let per_minute_code =
            parse("pm", embedded::AZURE_LLM_PER_MINUTE, &ParseOptions { select: "code".into(), unit: Unit::Requests }).unwrap();
        assert_eq!(per_minute_code.per_minute, code.per_minute);
        let tokens =
            parse("conv", embedded::AZURE_LLM_CONV, &ParseOptions { select: "conv".into(), unit: Unit::Tokens }).unwrap();
        let pm_tokens =
            parse("pm", embedded::AZURE_LLM_PER_MINUTE, &ParseOptions { select: "conv".into(), unit: Unit::Tokens }).unwrap();
        assert_eq!(tokens.per_minute, pm_tokens.per_minute);
    }

    #[test]
    fn the_functions_sample_has_480_minutes() {
        let t = parse("functions", embedded::AZURE_FUNCTIONS_2019, &ParseOptions::default()).unwrap();
        assert_eq!(t.per_minute.len(), 480);
        assert!(sum(&t) > 0.0);
    }

    #[test]
    fn the_alibaba_traces_when_present() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/demand");
        let (raw, per_minute) =
            (dir.join("alibaba_genai_2024_diffusion_requests.csv.gz"), dir.join("alibaba_genai_2024_diffusion_per_minute.csv"));
        if !raw.exists() || !per_minute.exists() {
            eprintln!(
                "skipped: the Alibaba diffusion traces (research-only licence) are read from ../shared/data/demand, which is absent"
            );
            return;
        }
        let raw = load(&raw, &ParseOptions::default()).unwrap();
        let pm = load(&per_minute, &ParseOptions::default()).unwrap();
        assert_eq!(sum(&raw), 15_630.0);
        assert_eq!(sum(&pm), 15_630.0);
        assert_eq!(pm.per_minute.len(), 24_480);
    }

    #[test]
    fn a_plain_timestamp_value_csv() {
        let t = parse("x", b"timestamp,value\n2024-01-01 00:00,5\n2024-01-01 00:02,7\n", &ParseOptions::default()).unwrap();
        assert_eq!(t.per_minute, vec![5.0, 0.0, 7.0]);
        let m = parse("x", b"minute,value\n0,1\n1,2\n", &ParseOptions::default()).unwrap();
        assert_eq!(m.per_minute, vec![1.0, 2.0]);
        let err = parse("x", b"timestamp,value\nsoon,5\n", &ParseOptions::default()).unwrap_err();
        assert_eq!(err.to_string(), r#"line 2: bad timestamp "soon""#);
    }

    #[test]
    fn counts_must_be_finite_and_not_negative_and_a_trace_at_most_a_year() {
        for value in ["inf", "NaN", "-3", "1e16", "many"] {
            let csv = format!("timestamp,value\n2024-01-01 00:00,5\n2024-01-01 00:01,{value}\n");
            let err = parse("x", csv.as_bytes(), &ParseOptions::default()).unwrap_err().to_string();
            assert!(err.starts_with(&format!("line 3: bad value \"{value}\"")), "{value}: {err}");
        }
        let err = parse("x", b"timestamp,value\n2018-01-01 00:00,5\n2024-01-01 00:00,7\n", &ParseOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than a year"), "{err}");
        let functions = "HashOwner,HashApp,HashFunction,Trigger,1,2\no,a,f,http,3,-1\n";
        let err = parse("x", functions.as_bytes(), &ParseOptions::default()).unwrap_err().to_string();
        assert!(err.starts_with("line 2: bad invocation count \"-1\""), "{err}");
    }

    #[test]
    fn replay_scales_loops_and_interpolates() {
        let trace = std::sync::Arc::new(Trace {
            name: "t".into(),
            unit: Unit::Requests,
            per_minute: vec![10.0, 20.0],
            partial_edges: false,
        });
        let r = Replay { trace: trace.clone(), time_scale: 10.0, amplitude: 2.0, looped: true };
        assert_eq!(r.demand_at(0.0), 20.0);
        assert_eq!(r.demand_at(5.0), 30.0, "halfway between 10 and 20, doubled");
        assert_eq!(r.demand_at(10.0), 40.0);
        assert_eq!(r.demand_at(20.0), 20.0, "looped");
        let once = Replay { trace, time_scale: 1.0, amplitude: 1.0, looped: false };
        assert_eq!(once.demand_at(5.0), 0.0);
    }
}
