//! Built-in scalar functions: lookup, arity, return types, and evaluation.

use std::sync::Arc;

use super::eval::{to_json, undyn};
use super::value::{
    TICKS_PER_DAY, TICKS_PER_SECOND, Type, Value, format_datetime_iso, parse_datetime, parse_timespan, to_display,
};

macro_rules! funcs {
    ($($variant:ident => [$($name:literal),+], $min:expr, $max:expr;)+) => {
        /// A built-in scalar function.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Func { $($variant),+ }

        /// Find a function by (lowercase) name.
        pub fn lookup(name: &str) -> Option<Func> {
            match name {
                $($($name)|+ => Some(Func::$variant),)+
                _ => None,
            }
        }

        /// (minimum, maximum) argument counts.
        pub fn arity(f: Func) -> (usize, usize) {
            match f { $(Func::$variant => ($min, $max)),+ }
        }
    };
}

const MANY: usize = usize::MAX;

funcs! {
    Ago => ["ago"], 1, 1;
    Now => ["now"], 0, 1;
    Bin => ["bin", "floor"], 2, 2;
    BinAt => ["bin_at"], 3, 3;
    Round => ["round"], 1, 2;
    Ceiling => ["ceiling"], 1, 1;
    Iff => ["iff", "iif"], 3, 3;
    Case => ["case"], 3, MANY;
    Coalesce => ["coalesce"], 1, MANY;
    IsNull => ["isnull"], 1, 1;
    IsNotNull => ["isnotnull"], 1, 1;
    IsEmpty => ["isempty"], 1, 1;
    IsNotEmpty => ["isnotempty"], 1, 1;
    IsNan => ["isnan"], 1, 1;
    IsFinite => ["isfinite"], 1, 1;
    Not => ["not"], 1, 1;
    ToString => ["tostring"], 1, 1;
    ToInt => ["toint"], 1, 1;
    ToLong => ["tolong"], 1, 1;
    ToReal => ["todouble", "toreal"], 1, 1;
    ToDecimal => ["todecimal"], 1, 1;
    ToDateTime => ["todatetime"], 1, 1;
    ToTimeSpan => ["totimespan"], 1, 1;
    ToBool => ["tobool", "toboolean"], 1, 1;
    ToGuid => ["toguid"], 1, 1;
    ToDynamic => ["parse_json", "todynamic", "parsejson"], 1, 1;
    Strcat => ["strcat"], 1, MANY;
    StrcatDelim => ["strcat_delim"], 3, MANY;
    Strlen => ["strlen"], 1, 1;
    Substring => ["substring"], 2, 3;
    ToLower => ["tolower"], 1, 1;
    ToUpper => ["toupper"], 1, 1;
    Trim => ["trim"], 2, 2;
    Split => ["split"], 2, 3;
    ReplaceString => ["replace_string"], 3, 3;
    ReplaceRegex => ["replace_regex", "replace"], 3, 3;
    ExtractRegex => ["extract"], 3, 4;
    IndexOf => ["indexof"], 2, 3;
    CountOf => ["countof"], 2, 3;
    Reverse => ["reverse"], 1, 1;
    FormatDateTime => ["format_datetime"], 2, 2;
    FormatTimeSpan => ["format_timespan"], 2, 2;
    DateTimeDiff => ["datetime_diff"], 3, 3;
    DateTimeAdd => ["datetime_add"], 3, 3;
    DateTimePart => ["datetime_part"], 2, 2;
    StartOfDay => ["startofday"], 1, 2;
    StartOfHour => ["startofhour"], 1, 1;
    StartOfWeek => ["startofweek"], 1, 2;
    StartOfMonth => ["startofmonth"], 1, 2;
    StartOfYear => ["startofyear"], 1, 2;
    EndOfDay => ["endofday"], 1, 2;
    DayOfWeek => ["dayofweek"], 1, 1;
    DayOfMonth => ["dayofmonth"], 1, 1;
    DayOfYear => ["dayofyear"], 1, 1;
    HourOfDay => ["hourofday"], 1, 1;
    GetYear => ["getyear"], 1, 1;
    GetMonth => ["getmonth", "monthofyear"], 1, 1;
    UnixTimeSecondsToDateTime => ["unixtime_seconds_todatetime"], 1, 1;
    UnixTimeMillisToDateTime => ["unixtime_milliseconds_todatetime"], 1, 1;
    ArrayLength => ["array_length"], 1, 1;
    ArraySum => ["array_sum"], 1, 1;
    ArrayIndexOf => ["array_index_of"], 2, 2;
    SetHasElement => ["set_has_element"], 2, 2;
    BagKeys => ["bag_keys"], 1, 1;
    Pack => ["pack", "bag_pack"], 0, MANY;
    PackArray => ["pack_array"], 0, MANY;
    MinOf => ["min_of"], 1, MANY;
    MaxOf => ["max_of"], 1, MANY;
    Abs => ["abs"], 1, 1;
    Sqrt => ["sqrt"], 1, 1;
    Log => ["log"], 1, 1;
    Log10 => ["log10"], 1, 1;
    Log2 => ["log2"], 1, 1;
    Exp => ["exp"], 1, 1;
    Pow => ["pow"], 2, 2;
    Sign => ["sign"], 1, 1;
    TypeOf => ["gettype"], 1, 1;
}

/// Aggregation functions (evaluated by `summarize` and `make-series`).
pub fn is_aggregate(name: &str) -> bool {
    matches!(
        name,
        "count"
            | "countif"
            | "sum"
            | "sumif"
            | "avg"
            | "avgif"
            | "min"
            | "max"
            | "minif"
            | "maxif"
            | "dcount"
            | "dcountif"
            | "percentile"
            | "percentiles"
            | "stdev"
            | "stdevif"
            | "variance"
            | "varianceif"
            | "make_list"
            | "make_set"
            | "make_bag"
            | "arg_max"
            | "arg_min"
            | "any"
            | "take_any"
            | "make_list_if"
            | "make_set_if"
            | "count_distinct"
    )
}

/// The static return type of a call, given its arguments' types.
pub fn return_type(f: Func, args: &[Option<Type>]) -> Option<Type> {
    use Func::*;
    let first = args.first().copied().flatten();
    Some(match f {
        Ago
        | Now
        | ToDateTime
        | StartOfDay
        | StartOfHour
        | StartOfWeek
        | StartOfMonth
        | StartOfYear
        | EndOfDay
        | DateTimeAdd
        | UnixTimeSecondsToDateTime
        | UnixTimeMillisToDateTime => Type::DateTime,
        Bin | BinAt => first?,
        Round | Ceiling | Abs | Sign => match first? {
            Type::Int | Type::Long if f != Round || args.len() == 1 => first?,
            Type::Int | Type::Long => Type::Real,
            t => t,
        },
        Iff => args.get(1).copied().flatten().or(args.get(2).copied().flatten())?,
        Case => args.iter().skip(1).step_by(2).find_map(|t| *t).or(args.last().copied().flatten())?,
        Coalesce | MinOf | MaxOf => args.iter().find_map(|t| *t)?,
        IsNull | IsNotNull | IsEmpty | IsNotEmpty | IsNan | IsFinite | Not | ToBool | SetHasElement => Type::Bool,
        ToString | Strcat | StrcatDelim | Substring | ToLower | ToUpper | Trim | ReplaceString | ReplaceRegex | Reverse
        | FormatDateTime | FormatTimeSpan | TypeOf => Type::String,
        ExtractRegex => args.get(3).copied().flatten().unwrap_or(Type::String),
        ToInt | HourOfDay | DayOfMonth | DayOfYear | GetYear | GetMonth => Type::Int,
        ToLong | Strlen | DateTimeDiff | DateTimePart | ArrayLength | IndexOf | CountOf | ArrayIndexOf => Type::Long,
        ToReal | Sqrt | Log | Log10 | Log2 | Exp | Pow => Type::Real,
        ToDecimal => Type::Decimal,
        ToTimeSpan | DayOfWeek => Type::TimeSpan,
        ToGuid => Type::Guid,
        ToDynamic | Split | Pack | PackArray | BagKeys | ArraySum => {
            if f == ArraySum {
                Type::Real
            } else {
                Type::Dynamic
            }
        }
    })
}

/// Ticks between 0001-01-01 and the Unix epoch (KQL bins datetimes from year 1).
const EPOCH_OFFSET_TICKS: i64 = 719_162 * TICKS_PER_DAY;

fn parts(ticks: i64) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(ticks.div_euclid(TICKS_PER_SECOND))
        .ok()
        .map(|t| t + time::Duration::nanoseconds(ticks.rem_euclid(TICKS_PER_SECOND) * 100))
}

fn ticks_of(t: time::OffsetDateTime) -> i64 {
    t.unix_timestamp() * TICKS_PER_SECOND + i64::from(t.nanosecond()) / 100
}

fn text(v: &Value) -> Option<String> {
    v.as_text().map(|s| s.into_owned())
}

fn real(v: &Value) -> Option<f64> {
    undyn(v).as_f64()
}

fn to_datetime(v: &Value) -> Option<i64> {
    match undyn(v) {
        Value::DateTime(t) => Some(t),
        Value::String(s) => parse_datetime(&s),
        _ => None,
    }
}

fn to_timespan(v: &Value) -> Option<i64> {
    match undyn(v) {
        Value::TimeSpan(t) => Some(t),
        Value::String(s) => parse_timespan(&s),
        Value::Long(n) => Some(n),
        Value::Int(n) => Some(i64::from(n)),
        _ => None,
    }
}

fn floor_to(v: i64, size: i64) -> i64 {
    if size <= 0 { v } else { v.div_euclid(size) * size }
}

/// `bin(v, size)`: round down to a multiple of `size` (datetimes from 0001-01-01).
pub fn bin(v: &Value, size: &Value) -> Value {
    // Fast paths for the common shapes, without copying.
    match (v, size) {
        (Value::DateTime(t), Value::TimeSpan(step)) if *step > 0 => {
            return Value::DateTime(floor_to(t + EPOCH_OFFSET_TICKS, *step) - EPOCH_OFFSET_TICKS);
        }
        (Value::Long(x), Value::Long(s)) if *s > 0 => return Value::Long(floor_to(*x, *s)),
        (Value::Null, _) => return Value::Null,
        _ => {}
    }
    match (undyn(v), undyn(size)) {
        (Value::DateTime(t), s) => match to_timespan(&s) {
            Some(step) if step > 0 => Value::DateTime(floor_to(t + EPOCH_OFFSET_TICKS, step) - EPOCH_OFFSET_TICKS),
            _ => Value::Null,
        },
        (Value::TimeSpan(t), s) => match to_timespan(&s) {
            Some(step) if step > 0 => Value::TimeSpan(floor_to(t, step)),
            _ => Value::Null,
        },
        (Value::Long(x), Value::Long(s)) if s > 0 => Value::Long(floor_to(x, s)),
        (Value::Int(x), Value::Long(s)) if s > 0 => Value::Int(floor_to(i64::from(x), s) as i32),
        (Value::Long(x), Value::Int(s)) if s > 0 => Value::Long(floor_to(x, i64::from(s))),
        (Value::Int(x), Value::Int(s)) if s > 0 => Value::Int(floor_to(i64::from(x), i64::from(s)) as i32),
        (x, s) => match (x.as_f64(), s.as_f64()) {
            (Some(a), Some(b)) if b > 0.0 => {
                let r = (a / b).floor() * b;
                if matches!(x, Value::Long(_) | Value::Int(_)) { Value::Long(r as i64) } else { Value::Real(r) }
            }
            _ => Value::Null,
        },
    }
}

/// Evaluate a function on argument values.
pub fn call(f: Func, args: &[Value], now: i64) -> Value {
    use Func::*;
    let a = |i: usize| args.get(i).cloned().unwrap_or(Value::Null);
    match f {
        Ago => to_timespan(&a(0)).map_or(Value::Null, |t| Value::DateTime(now - t)),
        Now => Value::DateTime(now + args.first().and_then(to_timespan).unwrap_or(0)),
        Bin => bin(&a(0), &a(1)),
        BinAt => match (to_datetime(&a(0)), to_timespan(&a(1)), to_datetime(&a(2))) {
            (Some(t), Some(step), Some(at)) if step > 0 => Value::DateTime(floor_to(t - at, step) + at),
            _ => match (real(&a(0)), real(&a(1)), real(&a(2))) {
                (Some(x), Some(s), Some(at)) if s > 0.0 => Value::Real(((x - at) / s).floor() * s + at),
                _ => Value::Null,
            },
        },
        Round => {
            let digits = args.get(1).and_then(|d| undyn(d).as_i64()).unwrap_or(0);
            match undyn(&a(0)) {
                v @ (Value::Int(_) | Value::Long(_)) if digits >= 0 && args.len() == 1 => v,
                v => real(&v).map_or(Value::Null, |x| {
                    let m = 10f64.powi(digits as i32);
                    Value::Real((x * m).round() / m)
                }),
            }
        }
        Ceiling => match undyn(&a(0)) {
            v @ (Value::Int(_) | Value::Long(_)) => v,
            v => real(&v).map_or(Value::Null, |x| Value::Real(x.ceil())),
        },
        Iff => {
            if undyn(&a(0)) == Value::Bool(true) {
                a(1)
            } else {
                a(2)
            }
        }
        Case => {
            let mut i = 0;
            while i + 1 < args.len() {
                if undyn(&args[i]) == Value::Bool(true) {
                    return args[i + 1].clone();
                }
                i += 2;
            }
            args.last().cloned().unwrap_or(Value::Null)
        }
        Coalesce => {
            args.iter().find(|v| !v.is_null() && !matches!(v, Value::String(s) if s.is_empty())).cloned().unwrap_or(Value::Null)
        }
        IsNull => Value::Bool(a(0).is_null()),
        IsNotNull => Value::Bool(!a(0).is_null()),
        IsEmpty => Value::Bool(is_empty(&a(0))),
        IsNotEmpty => Value::Bool(!is_empty(&a(0))),
        IsNan => Value::Bool(real(&a(0)).is_some_and(f64::is_nan)),
        IsFinite => Value::Bool(real(&a(0)).is_some_and(f64::is_finite)),
        Not => match undyn(&a(0)) {
            Value::Bool(b) => Value::Bool(!b),
            _ => Value::Null,
        },
        ToString => {
            let v = a(0);
            if matches!(v, Value::Null) { Value::str("") } else { Value::String(to_display(&v).into()) }
        }
        ToInt => to_long(&a(0)).map_or(Value::Null, |v| Value::Int(v as i32)),
        ToLong => to_long(&a(0)).map_or(Value::Null, Value::Long),
        ToReal => to_real(&a(0)).map_or(Value::Null, Value::Real),
        ToDecimal => to_real(&a(0)).map_or(Value::Null, Value::Decimal),
        ToDateTime => to_datetime(&a(0)).map_or(Value::Null, Value::DateTime),
        ToTimeSpan => match undyn(&a(0)) {
            Value::TimeSpan(t) => Value::TimeSpan(t),
            Value::String(s) => parse_timespan(&s).map_or(Value::Null, Value::TimeSpan),
            v => v.as_i64().map_or(Value::Null, Value::TimeSpan),
        },
        ToBool => match undyn(&a(0)) {
            Value::Bool(b) => Value::Bool(b),
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::Null,
            },
            v => v.as_f64().map_or(Value::Null, |x| Value::Bool(x != 0.0)),
        },
        ToGuid => text(&a(0)).filter(|s| s.len() == 36).map_or(Value::Null, |s| Value::Guid(s.to_ascii_lowercase().into())),
        ToDynamic => match a(0) {
            Value::String(s) => match serde_json::from_str::<serde_json::Value>(&s) {
                Ok(j) => Value::Dynamic(Arc::new(j)),
                Err(_) => Value::Dynamic(Arc::new(serde_json::Value::String(s.to_string()))),
            },
            Value::Null => Value::Null,
            Value::Dynamic(j) => Value::Dynamic(j),
            other => Value::Dynamic(Arc::new(to_json(&other))),
        },
        Strcat => Value::String(args.iter().map(to_display).collect::<String>().into()),
        StrcatDelim => {
            let delim = to_display(&a(0));
            Value::String(args[1..].iter().map(to_display).collect::<Vec<_>>().join(&delim).into())
        }
        Strlen => text(&a(0)).map_or(Value::Null, |s| Value::Long(s.chars().count() as i64)),
        Substring => {
            let Some(s) = text(&a(0)) else {
                return Value::Null;
            };
            let chars: Vec<char> = s.chars().collect();
            let start = undyn(&a(1)).as_i64().unwrap_or(0).clamp(0, chars.len() as i64) as usize;
            let len = args.get(2).and_then(|l| undyn(l).as_i64()).map_or(chars.len() - start, |l| l.max(0) as usize);
            Value::String(chars[start..(start + len).min(chars.len())].iter().collect::<String>().into())
        }
        ToLower => text(&a(0)).map_or(Value::Null, |s| Value::String(s.to_lowercase().into())),
        ToUpper => text(&a(0)).map_or(Value::Null, |s| Value::String(s.to_uppercase().into())),
        Trim => match (text(&a(0)), text(&a(1))) {
            (Some(p), Some(s)) => match regex::Regex::new(&format!("^(?:{p})+|(?:{p})+$")) {
                Ok(re) => Value::String(re.replace_all(&s, "").into_owned().into()),
                Err(_) => Value::Null,
            },
            _ => Value::Null,
        },
        Split => {
            let (Some(s), Some(d)) = (text(&a(0)), text(&a(1))) else {
                return Value::Null;
            };
            let pieces: Vec<serde_json::Value> = if d.is_empty() {
                vec![serde_json::Value::String(s.clone())]
            } else {
                s.split(d.as_str()).map(|p| serde_json::Value::String(p.to_string())).collect()
            };
            match args.get(2).and_then(|i| undyn(i).as_i64()) {
                Some(i) => pieces
                    .get(i as usize)
                    .map_or(Value::Null, |p| Value::Dynamic(Arc::new(serde_json::Value::Array(vec![p.clone()])))),
                None => Value::Dynamic(Arc::new(serde_json::Value::Array(pieces))),
            }
        }
        ReplaceString => match (text(&a(0)), text(&a(1)), text(&a(2))) {
            (Some(s), Some(from), Some(to)) if !from.is_empty() => Value::String(s.replace(&from, &to).into()),
            (Some(s), _, _) => Value::String(s.into()),
            _ => Value::Null,
        },
        ReplaceRegex => match (text(&a(0)), text(&a(1)), text(&a(2))) {
            (Some(s), Some(p), Some(to)) => match regex::Regex::new(&p) {
                Ok(re) => Value::String(re.replace_all(&s, kusto_replacement(&to).as_str()).into_owned().into()),
                Err(_) => Value::Null,
            },
            _ => Value::Null,
        },
        ExtractRegex => {
            let (Some(p), Some(group), Some(s)) = (text(&a(0)), undyn(&a(1)).as_i64(), text(&a(2))) else {
                return Value::Null;
            };
            let Ok(re) = regex::Regex::new(&p) else {
                return Value::Null;
            };
            let Some(m) = re.captures(&s).and_then(|c| c.get(group as usize)) else {
                return Value::Null;
            };
            let out = Value::String(m.as_str().into());
            // The optional 4th argument, `typeof(T)`, arrives as the type's name.
            match args.get(3).and_then(text).and_then(|t| Type::parse(&t)) {
                Some(ty) => convert_to(&out, ty),
                None => out,
            }
        }
        IndexOf => match (text(&a(0)), text(&a(1))) {
            (Some(s), Some(needle)) => {
                let start = args.get(2).and_then(|v| undyn(v).as_i64()).unwrap_or(0).max(0) as usize;
                let chars: Vec<char> = s.chars().collect();
                let tail: String = chars.iter().skip(start).collect();
                match tail.find(&needle) {
                    Some(byte) => Value::Long((start + tail[..byte].chars().count()) as i64),
                    None => Value::Long(-1),
                }
            }
            _ => Value::Null,
        },
        CountOf => match (text(&a(0)), text(&a(1))) {
            (Some(s), Some(needle)) if !needle.is_empty() => {
                if args.get(2).and_then(text).as_deref() == Some("regex") {
                    regex::Regex::new(&needle).map_or(Value::Null, |re| Value::Long(re.find_iter(&s).count() as i64))
                } else {
                    Value::Long(s.matches(&needle).count() as i64)
                }
            }
            _ => Value::Null,
        },
        Reverse => text(&a(0)).map_or(Value::Null, |s| Value::String(s.chars().rev().collect::<String>().into())),
        FormatDateTime => match (to_datetime(&a(0)), text(&a(1))) {
            (Some(t), Some(fmt)) => Value::String(format_datetime(t, &fmt).into()),
            _ => Value::Null,
        },
        FormatTimeSpan => match (to_timespan(&a(0)), text(&a(1))) {
            (Some(t), Some(fmt)) => Value::String(format_timespan_pattern(t, &fmt).into()),
            _ => Value::Null,
        },
        DateTimeDiff => match (text(&a(0)), to_datetime(&a(1)), to_datetime(&a(2))) {
            (Some(part), Some(x), Some(y)) => datetime_diff(&part, x, y).map_or(Value::Null, Value::Long),
            _ => Value::Null,
        },
        DateTimeAdd => match (text(&a(0)), undyn(&a(1)).as_i64(), to_datetime(&a(2))) {
            (Some(part), Some(n), Some(t)) => datetime_add(&part, n, t).map_or(Value::Null, Value::DateTime),
            _ => Value::Null,
        },
        DateTimePart => match (text(&a(0)), to_datetime(&a(1)).and_then(parts)) {
            (Some(part), Some(t)) => Value::Long(match part.to_ascii_lowercase().as_str() {
                "year" => i64::from(t.year()),
                "quarter" => i64::from((u8::from(t.month()) - 1) / 3 + 1),
                "month" => i64::from(u8::from(t.month())),
                "day" => i64::from(t.day()),
                "dayofyear" => i64::from(t.ordinal()),
                "hour" => i64::from(t.hour()),
                "minute" => i64::from(t.minute()),
                "second" => i64::from(t.second()),
                "millisecond" => i64::from(t.millisecond()),
                _ => return Value::Null,
            }),
            _ => Value::Null,
        },
        StartOfDay => to_datetime(&a(0))
            .map_or(Value::Null, |t| Value::DateTime(floor_to(t, TICKS_PER_DAY) + offset_days(args.get(1)) * TICKS_PER_DAY)),
        EndOfDay => to_datetime(&a(0)).map_or(Value::Null, |t| {
            Value::DateTime(floor_to(t, TICKS_PER_DAY) + (offset_days(args.get(1)) + 1) * TICKS_PER_DAY - 1)
        }),
        StartOfHour => to_datetime(&a(0)).map_or(Value::Null, |t| Value::DateTime(floor_to(t, 3600 * TICKS_PER_SECOND))),
        StartOfWeek => to_datetime(&a(0)).map_or(Value::Null, |t| {
            // Weeks start on Sunday; 1970-01-01 was a Thursday (4 days after Sunday).
            let day = floor_to(t, TICKS_PER_DAY);
            let dow = (day / TICKS_PER_DAY + 4).rem_euclid(7);
            Value::DateTime(day - dow * TICKS_PER_DAY + offset_days(args.get(1)) * 7 * TICKS_PER_DAY)
        }),
        StartOfMonth => to_datetime(&a(0)).and_then(parts).map_or(Value::Null, |t| {
            let months = i64::from(t.year()) * 12 + i64::from(u8::from(t.month())) - 1 + offset_days(args.get(1));
            ymd_ticks(months.div_euclid(12) as i32, (months.rem_euclid(12) + 1) as u8, 1).map_or(Value::Null, Value::DateTime)
        }),
        StartOfYear => to_datetime(&a(0)).and_then(parts).map_or(Value::Null, |t| {
            ymd_ticks(t.year() + offset_days(args.get(1)) as i32, 1, 1).map_or(Value::Null, Value::DateTime)
        }),
        DayOfWeek => to_datetime(&a(0)).map_or(Value::Null, |t| {
            Value::TimeSpan((floor_to(t, TICKS_PER_DAY) / TICKS_PER_DAY + 4).rem_euclid(7) * TICKS_PER_DAY)
        }),
        DayOfMonth => to_datetime(&a(0)).and_then(parts).map_or(Value::Null, |t| Value::Int(i32::from(t.day()))),
        DayOfYear => to_datetime(&a(0)).and_then(parts).map_or(Value::Null, |t| Value::Int(i32::from(t.ordinal()))),
        HourOfDay => to_datetime(&a(0)).and_then(parts).map_or(Value::Null, |t| Value::Int(i32::from(t.hour()))),
        GetYear => to_datetime(&a(0)).and_then(parts).map_or(Value::Null, |t| Value::Int(t.year())),
        GetMonth => to_datetime(&a(0)).and_then(parts).map_or(Value::Null, |t| Value::Int(i32::from(u8::from(t.month())))),
        UnixTimeSecondsToDateTime => {
            real(&a(0)).map_or(Value::Null, |s| Value::DateTime((s * TICKS_PER_SECOND as f64).round() as i64))
        }
        UnixTimeMillisToDateTime => real(&a(0)).map_or(Value::Null, |s| Value::DateTime((s * 10_000.0).round() as i64)),
        ArrayLength => match a(0) {
            Value::Dynamic(j) => j.as_array().map_or(Value::Null, |arr| Value::Long(arr.len() as i64)),
            _ => Value::Null,
        },
        ArraySum => match a(0) {
            Value::Dynamic(j) => {
                j.as_array().map_or(Value::Null, |arr| Value::Real(arr.iter().filter_map(serde_json::Value::as_f64).sum()))
            }
            _ => Value::Null,
        },
        ArrayIndexOf => match a(0) {
            Value::Dynamic(j) => j.as_array().map_or(Value::Null, |arr| {
                let needle = to_json(&undyn(&a(1)));
                Value::Long(arr.iter().position(|x| *x == needle).map_or(-1, |i| i as i64))
            }),
            _ => Value::Null,
        },
        SetHasElement => match a(0) {
            Value::Dynamic(j) => Value::Bool(j.as_array().is_some_and(|arr| arr.contains(&to_json(&undyn(&a(1)))))),
            _ => Value::Null,
        },
        BagKeys => match a(0) {
            Value::Dynamic(j) => j.as_object().map_or(Value::Null, |o| {
                Value::Dynamic(Arc::new(serde_json::Value::Array(
                    o.keys().map(|k| serde_json::Value::String(k.clone())).collect(),
                )))
            }),
            _ => Value::Null,
        },
        Pack => {
            let mut map = serde_json::Map::new();
            for pair in args.chunks(2) {
                if let [k, v] = pair {
                    map.insert(to_display(k), to_json(v));
                }
            }
            Value::Dynamic(Arc::new(serde_json::Value::Object(map)))
        }
        PackArray => Value::Dynamic(Arc::new(serde_json::Value::Array(args.iter().map(to_json).collect()))),
        MinOf | MaxOf => {
            let mut best: Option<Value> = None;
            for v in args.iter().map(undyn).filter(|v| !v.is_null()) {
                best = Some(match best {
                    None => v,
                    Some(b) => {
                        let o = super::eval::compare(&v, &b).unwrap_or(std::cmp::Ordering::Equal);
                        if (f == MinOf && o.is_lt()) || (f == MaxOf && o.is_gt()) { v } else { b }
                    }
                });
            }
            best.unwrap_or(Value::Null)
        }
        Abs => match undyn(&a(0)) {
            Value::Int(i) => Value::Int(i.abs()),
            Value::Long(i) => Value::Long(i.abs()),
            Value::TimeSpan(t) => Value::TimeSpan(t.abs()),
            v => real(&v).map_or(Value::Null, |x| Value::Real(x.abs())),
        },
        Sign => real(&a(0)).map_or(Value::Null, |x| {
            Value::Real(if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            })
        }),
        Sqrt => math(&a(0), f64::sqrt),
        Log => math(&a(0), f64::ln),
        Log10 => math(&a(0), f64::log10),
        Log2 => math(&a(0), f64::log2),
        Exp => math(&a(0), f64::exp),
        Pow => match (real(&a(0)), real(&a(1))) {
            (Some(x), Some(y)) => Value::Real(x.powf(y)),
            _ => Value::Null,
        },
        TypeOf => Value::str(match a(0) {
            Value::Null => "null",
            Value::Dynamic(j) => match &*j {
                serde_json::Value::Array(_) => "array",
                serde_json::Value::Object(_) => "dictionary",
                serde_json::Value::String(_) => "string",
                serde_json::Value::Number(n) if n.is_i64() => "long",
                serde_json::Value::Number(_) => "real",
                serde_json::Value::Bool(_) => "bool",
                serde_json::Value::Null => "null",
            },
            v => v.ty().map_or("null", Type::name),
        }),
    }
}

fn offset_days(v: Option<&Value>) -> i64 {
    v.and_then(|v| undyn(v).as_i64()).unwrap_or(0)
}

fn ymd_ticks(year: i32, month: u8, day: u8) -> Option<i64> {
    let d = time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
    Some(ticks_of(d.midnight().assume_utc()))
}

fn math(v: &Value, f: fn(f64) -> f64) -> Value {
    real(v).map_or(Value::Null, |x| {
        let r = f(x);
        if r.is_nan() { Value::Null } else { Value::Real(r) }
    })
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Dynamic(j) => j.is_null() || j.as_str().is_some_and(str::is_empty),
        _ => v.is_null(),
    }
}

fn to_long(v: &Value) -> Option<i64> {
    match undyn(v) {
        Value::Int(i) => Some(i64::from(i)),
        Value::Long(i) => Some(i),
        Value::Real(f) | Value::Decimal(f) if f.is_finite() => Some(f.trunc() as i64),
        Value::Bool(b) => Some(i64::from(b)),
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .or_else(|| s.trim().parse::<f64>().ok().filter(|f| f.is_finite()).map(|f| f.trunc() as i64)),
        Value::DateTime(t) | Value::TimeSpan(t) => Some(t),
        _ => None,
    }
}

fn to_real(v: &Value) -> Option<f64> {
    match undyn(v) {
        Value::Bool(b) => Some(f64::from(u8::from(b))),
        Value::String(s) => s.trim().parse().ok(),
        Value::DateTime(t) | Value::TimeSpan(t) => Some(t as f64),
        other => other.as_f64(),
    }
}

/// Convert a value to a type, as `parse` and typed `extract` do (null when it does not fit).
pub fn convert_to(v: &Value, ty: Type) -> Value {
    if v.is_null() {
        return Value::Null;
    }
    match ty {
        Type::String => Value::String(to_display(v).into()),
        Type::Int => to_long(v).map_or(Value::Null, |x| Value::Int(x as i32)),
        Type::Long => to_long(v).map_or(Value::Null, Value::Long),
        Type::Real => to_real(v).map_or(Value::Null, Value::Real),
        Type::Decimal => to_real(v).map_or(Value::Null, Value::Decimal),
        Type::Bool => call(Func::ToBool, std::slice::from_ref(v), 0),
        Type::DateTime => to_datetime(v).map_or(Value::Null, Value::DateTime),
        Type::TimeSpan => call(Func::ToTimeSpan, std::slice::from_ref(v), 0),
        Type::Guid => call(Func::ToGuid, std::slice::from_ref(v), 0),
        Type::Dynamic => match v {
            Value::Dynamic(_) => v.clone(),
            Value::String(_) => call(Func::ToDynamic, std::slice::from_ref(v), 0),
            other => Value::Dynamic(Arc::new(to_json(other))),
        },
    }
}

/// `$1` → `${1}` so that regex's replacement syntax matches Kusto's `\1`-free `$1` form.
fn kusto_replacement(to: &str) -> String {
    let mut out = String::new();
    let mut chars = to.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
            continue;
        }
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut digits = String::new();
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                digits.push(d);
                chars.next();
            }
            out.push_str(&format!("${{{digits}}}"));
            continue;
        }
        out.push(c);
    }
    out
}

fn datetime_diff(part: &str, x: i64, y: i64) -> Option<i64> {
    let (a, b) = (parts(x)?, parts(y)?);
    let months = |t: &time::OffsetDateTime| i64::from(t.year()) * 12 + i64::from(u8::from(t.month())) - 1;
    Some(match part.to_ascii_lowercase().as_str() {
        "year" => i64::from(a.year() - b.year()),
        "quarter" => months(&a) / 3 - months(&b) / 3,
        "month" => months(&a) - months(&b),
        "week" => {
            let week = |t: i64| (floor_to(t, TICKS_PER_DAY) / TICKS_PER_DAY + 4).div_euclid(7);
            week(x) - week(y)
        }
        "day" => floor_to(x, TICKS_PER_DAY) / TICKS_PER_DAY - floor_to(y, TICKS_PER_DAY) / TICKS_PER_DAY,
        "hour" => {
            floor_to(x, 3600 * TICKS_PER_SECOND) / (3600 * TICKS_PER_SECOND)
                - floor_to(y, 3600 * TICKS_PER_SECOND) / (3600 * TICKS_PER_SECOND)
        }
        "minute" => {
            floor_to(x, 60 * TICKS_PER_SECOND) / (60 * TICKS_PER_SECOND)
                - floor_to(y, 60 * TICKS_PER_SECOND) / (60 * TICKS_PER_SECOND)
        }
        "second" => floor_to(x, TICKS_PER_SECOND) / TICKS_PER_SECOND - floor_to(y, TICKS_PER_SECOND) / TICKS_PER_SECOND,
        "millisecond" => floor_to(x, 10_000) / 10_000 - floor_to(y, 10_000) / 10_000,
        "microsecond" => floor_to(x, 10) / 10 - floor_to(y, 10) / 10,
        "nanosecond" => (x - y) * 100,
        _ => return None,
    })
}

fn datetime_add(part: &str, n: i64, t: i64) -> Option<i64> {
    let unit = match part.to_ascii_lowercase().as_str() {
        "year" => return add_months(t, n * 12),
        "quarter" => return add_months(t, n * 3),
        "month" => return add_months(t, n),
        "week" => 7 * TICKS_PER_DAY,
        "day" => TICKS_PER_DAY,
        "hour" => 3600 * TICKS_PER_SECOND,
        "minute" => 60 * TICKS_PER_SECOND,
        "second" => TICKS_PER_SECOND,
        "millisecond" => 10_000,
        "microsecond" => 10,
        "nanosecond" => return Some(t + n / 100),
        _ => return None,
    };
    Some(t + n * unit)
}

fn add_months(t: i64, n: i64) -> Option<i64> {
    let p = parts(t)?;
    let total = i64::from(p.year()) * 12 + i64::from(u8::from(p.month())) - 1 + n;
    let (year, month) = (total.div_euclid(12) as i32, (total.rem_euclid(12) + 1) as u8);
    let last = time::util::days_in_month(time::Month::try_from(month).ok()?, year);
    let day = p.day().min(last);
    let base = ymd_ticks(year, month, day)?;
    Some(base + t.rem_euclid(TICKS_PER_DAY))
}

/// .NET-style datetime format: yyyy yy MM M dd d HH H hh h mm m ss s f… tt, other text kept.
pub fn format_datetime(ticks: i64, fmt: &str) -> String {
    let Some(t) = parts(ticks) else {
        return format_datetime_iso(ticks);
    };
    let frac = ticks.rem_euclid(TICKS_PER_SECOND);
    let mut out = String::new();
    let chars: Vec<char> = fmt.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut n = 1;
        while i + n < chars.len() && chars[i + n] == c {
            n += 1;
        }
        let hour12 = match t.hour() % 12 {
            0 => 12,
            h => h,
        };
        let piece = match c {
            'y' if n >= 4 => format!("{:04}", t.year()),
            'y' => format!("{:02}", t.year() % 100),
            'M' if n >= 2 => format!("{:02}", u8::from(t.month())),
            'M' => u8::from(t.month()).to_string(),
            'd' if n >= 2 => format!("{:02}", t.day()),
            'd' => t.day().to_string(),
            'H' if n >= 2 => format!("{:02}", t.hour()),
            'H' => t.hour().to_string(),
            'h' if n >= 2 => format!("{hour12:02}"),
            'h' => hour12.to_string(),
            'm' if n >= 2 => format!("{:02}", t.minute()),
            'm' => t.minute().to_string(),
            's' if n >= 2 => format!("{:02}", t.second()),
            's' => t.second().to_string(),
            'f' | 'F' => format!("{frac:07}")[..n.min(7)].to_string(),
            't' => (if t.hour() < 12 { "AM" } else { "PM" })[..n.min(2)].to_string(),
            _ => std::iter::repeat_n(c, n).collect(),
        };
        out.push_str(&piece);
        i += n;
    }
    out
}

fn format_timespan_pattern(ticks: i64, fmt: &str) -> String {
    let t = ticks.unsigned_abs() as i64;
    let days = t / TICKS_PER_DAY;
    let h = (t / (3600 * TICKS_PER_SECOND)) % 24;
    let m = (t / (60 * TICKS_PER_SECOND)) % 60;
    let s = (t / TICKS_PER_SECOND) % 60;
    let frac = t % TICKS_PER_SECOND;
    let chars: Vec<char> = fmt.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut n = 1;
        while i + n < chars.len() && chars[i + n] == c {
            n += 1;
        }
        let width = n;
        let piece = match c {
            'd' => format!("{days:0width$}"),
            'h' | 'H' => format!("{h:0width$}"),
            'm' => format!("{m:0width$}"),
            's' => format!("{s:0width$}"),
            'f' | 'F' => format!("{frac:07}")[..n.min(7)].to_string(),
            _ => std::iter::repeat_n(c, n).collect(),
        };
        out.push_str(&piece);
        i += n;
    }
    out
}
