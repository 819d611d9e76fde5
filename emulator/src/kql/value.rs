//! KQL's scalar types and values.

use std::cmp::Ordering;
use std::sync::Arc;

/// Ticks (100 ns) per second, as .NET and KQL count them.
pub const TICKS_PER_SECOND: i64 = 10_000_000;
/// Ticks per day.
pub const TICKS_PER_DAY: i64 = 86_400 * TICKS_PER_SECOND;

/// A column or scalar type, with the names Log Analytics uses in responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Type {
    /// `bool`.
    Bool,
    /// `int` (32-bit).
    Int,
    /// `long` (64-bit).
    Long,
    /// `real` (64-bit float).
    Real,
    /// `decimal` (held as a 64-bit float here).
    Decimal,
    /// `string`.
    String,
    /// `datetime` (UTC, 100 ns ticks since the Unix epoch).
    DateTime,
    /// `timespan` (100 ns ticks).
    TimeSpan,
    /// `guid`.
    Guid,
    /// `dynamic` (JSON).
    Dynamic,
}

impl Type {
    /// The name in KQL and in the query API's `columns[].type`.
    pub fn name(self) -> &'static str {
        match self {
            Type::Bool => "bool",
            Type::Int => "int",
            Type::Long => "long",
            Type::Real => "real",
            Type::Decimal => "decimal",
            Type::String => "string",
            Type::DateTime => "datetime",
            Type::TimeSpan => "timespan",
            Type::Guid => "guid",
            Type::Dynamic => "dynamic",
        }
    }

    /// Parse a KQL type name (with the usual aliases).
    pub fn parse(name: &str) -> Option<Type> {
        Some(match name.to_ascii_lowercase().as_str() {
            "bool" | "boolean" => Type::Bool,
            "int" | "int32" => Type::Int,
            "long" | "int64" => Type::Long,
            "real" | "double" => Type::Real,
            "decimal" => Type::Decimal,
            "string" => Type::String,
            "datetime" | "date" => Type::DateTime,
            "timespan" | "time" => Type::TimeSpan,
            "guid" | "uuid" | "uniqueid" => Type::Guid,
            "dynamic" => Type::Dynamic,
            _ => return None,
        })
    }

    /// Whether values of this type are numbers.
    pub fn is_numeric(self) -> bool {
        matches!(self, Type::Int | Type::Long | Type::Real | Type::Decimal)
    }
}

/// One scalar value. `Null` is typeless; a column's type travels beside its values.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Null of any type.
    Null,
    /// A bool.
    Bool(bool),
    /// An int.
    Int(i32),
    /// A long.
    Long(i64),
    /// A real.
    Real(f64),
    /// A decimal (approximated by a float).
    Decimal(f64),
    /// A string.
    String(Arc<str>),
    /// A datetime in ticks since the Unix epoch.
    DateTime(i64),
    /// A timespan in ticks.
    TimeSpan(i64),
    /// A guid, as its canonical lowercase text.
    Guid(Arc<str>),
    /// A dynamic value.
    Dynamic(Arc<serde_json::Value>),
}

impl Value {
    /// A string value.
    pub fn str(s: &str) -> Value {
        Value::String(Arc::from(s))
    }

    /// The value's type, or `None` for null.
    pub fn ty(&self) -> Option<Type> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(_) => Type::Bool,
            Value::Int(_) => Type::Int,
            Value::Long(_) => Type::Long,
            Value::Real(_) => Type::Real,
            Value::Decimal(_) => Type::Decimal,
            Value::String(_) => Type::String,
            Value::DateTime(_) => Type::DateTime,
            Value::TimeSpan(_) => Type::TimeSpan,
            Value::Guid(_) => Type::Guid,
            Value::Dynamic(_) => Type::Dynamic,
        })
    }

    /// Whether this is null (a dynamic JSON null counts as null too).
    pub fn is_null(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Dynamic(j) => j.is_null(),
            Value::Real(f) | Value::Decimal(f) => f.is_nan(),
            _ => false,
        }
    }

    /// As a float, for arithmetic across numeric types.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(f64::from(*i)),
            Value::Long(i) => Some(*i as f64),
            Value::Real(f) | Value::Decimal(f) => Some(*f),
            Value::Dynamic(j) => j.as_f64(),
            _ => None,
        }
    }

    /// As an integer (ints and longs only, and dynamic integers).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(i64::from(*i)),
            Value::Long(i) => Some(*i),
            Value::Dynamic(j) => j.as_i64(),
            _ => None,
        }
    }

    /// As text, for string operators: strings and guids as they are, others as `tostring` gives them.
    pub fn as_text(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            Value::Null => None,
            Value::String(s) | Value::Guid(s) => Some(std::borrow::Cow::Borrowed(s)),
            other => Some(std::borrow::Cow::Owned(to_display(other))),
        }
    }

    /// A total order for sorting: nulls compare as least; numbers across types by value;
    /// otherwise by type, then by value.
    pub fn cmp_total(&self, other: &Value) -> Ordering {
        match (self, other) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Null, _) => Ordering::Less,
            (_, Value::Null) => Ordering::Greater,
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::String(a), Value::String(b)) | (Value::Guid(a), Value::Guid(b)) => a.cmp(b),
            (Value::DateTime(a), Value::DateTime(b)) | (Value::TimeSpan(a), Value::TimeSpan(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Long(a), Value::Long(b)) => a.cmp(b),
            (a, b) => match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                _ => a.ty().cmp(&b.ty()).then_with(|| to_display(a).cmp(&to_display(b))),
            },
        }
    }
}

/// Days since 0001-01-01 of the Unix epoch, to convert with chrono-free arithmetic.
pub fn ticks_from_unix_seconds(seconds: i64, nanos: i64) -> i64 {
    seconds * TICKS_PER_SECOND + nanos / 100
}

/// A datetime as ISO-8601 UTC with 7 fractional digits trimmed as Log Analytics prints them.
pub fn format_datetime_iso(ticks: i64) -> String {
    let secs = ticks.div_euclid(TICKS_PER_SECOND);
    let frac = ticks.rem_euclid(TICKS_PER_SECOND);
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs) else {
        return format!("{ticks}");
    };
    let base =
        format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second());
    if frac == 0 {
        format!("{base}Z")
    } else {
        let digits = format!("{frac:07}");
        format!("{base}.{}Z", digits.trim_end_matches('0'))
    }
}

/// A timespan as `[-][d.]hh:mm:ss[.fffffff]`.
pub fn format_timespan(ticks: i64) -> String {
    let sign = if ticks < 0 { "-" } else { "" };
    let t = ticks.unsigned_abs();
    let per_s = TICKS_PER_SECOND as u64;
    let days = t / (TICKS_PER_DAY as u64);
    let rem = t % (TICKS_PER_DAY as u64);
    let h = rem / (3600 * per_s);
    let m = (rem / (60 * per_s)) % 60;
    let s = (rem / per_s) % 60;
    let frac = rem % per_s;
    let mut out = String::from(sign);
    if days > 0 {
        out.push_str(&format!("{days}."));
    }
    out.push_str(&format!("{h:02}:{m:02}:{s:02}"));
    if frac > 0 {
        out.push_str(&format!(".{frac:07}"));
    }
    out
}

/// How `tostring()` renders a value.
pub fn to_display(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Long(i) => i.to_string(),
        Value::Real(f) | Value::Decimal(f) => format_real(*f),
        Value::String(s) | Value::Guid(s) => s.to_string(),
        Value::DateTime(t) => format_datetime_iso(*t),
        Value::TimeSpan(t) => format_timespan(*t),
        Value::Dynamic(j) => match &**j {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    }
}

/// Reals print without a trailing `.0` when whole, like Kusto's `tostring`.
pub fn format_real(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity".into() } else { "-Infinity".into() }
    } else if f == f.trunc() && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// Parse a datetime literal: ISO-8601 (`2024-01-02`, `2024-01-02T03:04:05.123Z`,
/// `2024-01-02 03:04`), RFC 822 is not supported.
pub fn parse_datetime(text: &str) -> Option<i64> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    let (date, rest) = match t.find(['T', ' ']) {
        Some(i) => (&t[..i], t[i + 1..].trim()),
        None => (t, ""),
    };
    let mut parts = date.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    let date = time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
    let mut rest = rest.trim_end_matches('Z').trim_end_matches('z');
    let mut offset_ticks = 0i64;
    if let Some(i) = rest.rfind(['+', '-']).filter(|&i| i > 0) {
        let (clock, off) = rest.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let mut hm = off[1..].split(':');
        let oh: i64 = hm.next()?.parse().ok()?;
        let om: i64 = hm.next().unwrap_or("0").parse().ok()?;
        offset_ticks = sign * (oh * 3600 + om * 60) * TICKS_PER_SECOND;
        rest = clock;
    }
    let (mut h, mut m, mut s, mut frac) = (0i64, 0i64, 0i64, 0i64);
    if !rest.is_empty() {
        let mut hms = rest.split(':');
        h = hms.next()?.parse().ok()?;
        m = hms.next().unwrap_or("0").parse().ok()?;
        if let Some(sec) = hms.next() {
            let (whole, f) = sec.split_once('.').unwrap_or((sec, ""));
            s = whole.parse().ok()?;
            if !f.is_empty() {
                let digits: String = f.chars().take(7).collect();
                frac = format!("{digits:0<7}").parse().ok()?;
            }
        }
        if h > 23 || m > 59 || s > 59 {
            return None;
        }
    }
    let days =
        i64::from(date.to_julian_day() - time::Date::from_calendar_date(1970, time::Month::January, 1).ok()?.to_julian_day());
    Some(days * TICKS_PER_DAY + ((h * 60 + m) * 60 + s) * TICKS_PER_SECOND + frac - offset_ticks)
}

/// Parse a timespan: `[-][d.]hh:mm[:ss[.fffffff]]`, or a number with a unit (`5m`, `1.5h`, `100ms`).
pub fn parse_timespan(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Some(ticks) = parse_timespan_unit(t) {
        return Some(ticks);
    }
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (days, clock) = match t.split_once('.') {
        Some((d, rest)) if rest.contains(':') && !d.contains(':') => (d.parse::<i64>().ok()?, rest),
        _ => (0, t),
    };
    let mut parts = clock.split(':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let (s, frac) = match parts.next() {
        Some(sec) => {
            let (whole, f) = sec.split_once('.').unwrap_or((sec, ""));
            let digits: String = f.chars().take(7).collect();
            (whole.parse::<i64>().ok()?, if f.is_empty() { 0 } else { format!("{digits:0<7}").parse::<i64>().ok()? })
        }
        None => (0, 0),
    };
    let ticks = days * TICKS_PER_DAY + ((h * 60 + m) * 60 + s) * TICKS_PER_SECOND + frac;
    Some(if neg { -ticks } else { ticks })
}

/// `5m`, `1.5h`, `2d`, `100ms`, `10microseconds`, `3tick`, `1sec`, `2min`.
pub fn parse_timespan_unit(t: &str) -> Option<i64> {
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))?;
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let per: f64 = match unit.to_ascii_lowercase().as_str() {
        "d" | "day" | "days" => TICKS_PER_DAY as f64,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0 * TICKS_PER_SECOND as f64,
        "m" | "min" | "minute" | "minutes" => 60.0 * TICKS_PER_SECOND as f64,
        "s" | "sec" | "second" | "seconds" => TICKS_PER_SECOND as f64,
        "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 10_000.0,
        "microsecond" | "microseconds" => 10.0,
        "tick" | "ticks" => 1.0,
        _ => return None,
    };
    Some((n * per).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_round_trip() {
        let check = |text: &str, iso: &str| assert_eq!(format_datetime_iso(parse_datetime(text).unwrap()), iso, "{text}");
        check("2024-01-02", "2024-01-02T00:00:00Z");
        check("2024-01-02 03:04:05", "2024-01-02T03:04:05Z");
        check("2024-01-02T03:04:05.1234567Z", "2024-01-02T03:04:05.1234567Z");
        check("2024-01-02T03:04:05.5", "2024-01-02T03:04:05.5Z");
        check("2024-01-02T03:04:05+01:00", "2024-01-02T02:04:05Z");
        check("1969-12-31 23:59:59", "1969-12-31T23:59:59Z");
        assert_eq!(parse_datetime("2024-13-01"), None);
        assert_eq!(parse_datetime("yesterday"), None);
    }

    #[test]
    fn timespans_round_trip() {
        let check = |text: &str, shown: &str| assert_eq!(format_timespan(parse_timespan(text).unwrap()), shown, "{text}");
        check("5m", "00:05:00");
        check("1.5h", "01:30:00");
        check("2d", "2.00:00:00");
        check("100ms", "00:00:00.1000000");
        check("1.02:03:04", "1.02:03:04");
        check("-00:00:30", "-00:00:30");
        check("00:00:00.5", "00:00:00.5000000");
    }
}
