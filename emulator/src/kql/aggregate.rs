//! Aggregation functions and their accumulators (`summarize`, `make-series`).

use std::collections::HashSet;

use super::eval::{compare, to_json, undyn};
use super::value::{Type, Value};

/// The aggregation functions.
#[derive(Debug, Clone, PartialEq)]
pub enum AggKind {
    Count,
    CountIf,
    Sum,
    SumIf,
    Avg,
    AvgIf,
    Min,
    Max,
    MinIf,
    MaxIf,
    DCount,
    DCountIf,
    Percentiles(Vec<f64>),
    Stdev,
    StdevIf,
    Variance,
    VarianceIf,
    MakeList,
    MakeListIf,
    MakeSet,
    MakeSetIf,
    MakeBag,
    ArgMax,
    ArgMin,
    Any,
}

impl AggKind {
    /// Parse an aggregation by name; percentiles need their constant arguments.
    pub fn parse(name: &str) -> Option<AggKind> {
        Some(match name {
            "count" => AggKind::Count,
            "countif" => AggKind::CountIf,
            "sum" => AggKind::Sum,
            "sumif" => AggKind::SumIf,
            "avg" => AggKind::Avg,
            "avgif" => AggKind::AvgIf,
            "min" => AggKind::Min,
            "max" => AggKind::Max,
            "minif" => AggKind::MinIf,
            "maxif" => AggKind::MaxIf,
            "dcount" | "count_distinct" => AggKind::DCount,
            "dcountif" => AggKind::DCountIf,
            "percentile" | "percentiles" => AggKind::Percentiles(Vec::new()),
            "stdev" => AggKind::Stdev,
            "stdevif" => AggKind::StdevIf,
            "variance" => AggKind::Variance,
            "varianceif" => AggKind::VarianceIf,
            "make_list" => AggKind::MakeList,
            "make_list_if" => AggKind::MakeListIf,
            "make_set" => AggKind::MakeSet,
            "make_set_if" => AggKind::MakeSetIf,
            "make_bag" => AggKind::MakeBag,
            "arg_max" => AggKind::ArgMax,
            "arg_min" => AggKind::ArgMin,
            "any" | "take_any" => AggKind::Any,
            _ => return None,
        })
    }

    /// The prefix of a derived column name (`sum` → `sum_x`, `make_list` → `list_x`).
    pub fn prefix(&self, name: &str) -> String {
        match self {
            AggKind::MakeList | AggKind::MakeListIf => "list".into(),
            AggKind::MakeSet | AggKind::MakeSetIf => "set".into(),
            AggKind::MakeBag => "bag".into(),
            AggKind::Percentiles(_) => "percentile".into(),
            AggKind::Any => "any".into(),
            AggKind::DCount if name == "count_distinct" => "count_distinct".into(),
            _ => name.to_string(),
        }
    }

    /// Whether the last argument is a predicate (the `…if` forms).
    pub fn has_predicate(&self) -> bool {
        matches!(
            self,
            AggKind::CountIf
                | AggKind::SumIf
                | AggKind::AvgIf
                | AggKind::MinIf
                | AggKind::MaxIf
                | AggKind::DCountIf
                | AggKind::StdevIf
                | AggKind::VarianceIf
                | AggKind::MakeListIf
                | AggKind::MakeSetIf
        )
    }

    /// Result type, given the type of the first argument.
    pub fn result_type(&self, arg: Option<Type>) -> Type {
        match self {
            AggKind::Count | AggKind::CountIf | AggKind::DCount | AggKind::DCountIf => Type::Long,
            AggKind::Sum | AggKind::SumIf => match arg {
                Some(Type::Int | Type::Long) => Type::Long,
                Some(Type::TimeSpan) => Type::TimeSpan,
                Some(Type::Decimal) => Type::Decimal,
                _ => Type::Real,
            },
            AggKind::Avg | AggKind::AvgIf => match arg {
                Some(Type::TimeSpan) => Type::TimeSpan,
                Some(Type::DateTime) => Type::DateTime,
                _ => Type::Real,
            },
            AggKind::Stdev | AggKind::StdevIf | AggKind::Variance | AggKind::VarianceIf => Type::Real,
            AggKind::MakeList | AggKind::MakeListIf | AggKind::MakeSet | AggKind::MakeSetIf | AggKind::MakeBag => Type::Dynamic,
            AggKind::Min | AggKind::Max | AggKind::MinIf | AggKind::MaxIf | AggKind::Any | AggKind::ArgMax | AggKind::ArgMin => {
                arg.unwrap_or(Type::String)
            }
            AggKind::Percentiles(_) => arg.unwrap_or(Type::Real),
        }
    }
}

/// A hashable, comparable form of a value, for grouping and distinct counts: numbers of any
/// integer type group together, and so do equal strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyPart {
    Null,
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(std::sync::Arc<str>),
    DateTime(i64),
    TimeSpan(i64),
    Json(String),
}

impl KeyPart {
    /// The key of a value.
    pub fn of(v: &Value) -> KeyPart {
        match v {
            Value::Null => KeyPart::Null,
            Value::Bool(b) => KeyPart::Bool(*b),
            Value::Int(i) => KeyPart::Int(i64::from(*i)),
            Value::Long(i) => KeyPart::Int(*i),
            Value::Real(f) | Value::Decimal(f) => {
                if f.is_nan() {
                    KeyPart::Null
                } else if f.fract() == 0.0 && f.abs() < 9e15 {
                    KeyPart::Int(*f as i64)
                } else {
                    KeyPart::Float(f.to_bits())
                }
            }
            Value::String(s) | Value::Guid(s) => KeyPart::Str(s.clone()),
            Value::DateTime(t) => KeyPart::DateTime(*t),
            Value::TimeSpan(t) => KeyPart::TimeSpan(*t),
            Value::Dynamic(j) => match &**j {
                serde_json::Value::Null => KeyPart::Null,
                serde_json::Value::String(s) => KeyPart::Str(s.as_str().into()),
                other => KeyPart::Json(other.to_string()),
            },
        }
    }
}

/// A borrowed, hashable form of a value with the same equality as [`KeyPart`], for grouping
/// without allocating (only dynamic arrays and bags are rendered to text).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyRef<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(&'a str),
    DateTime(i64),
    TimeSpan(i64),
    Json(String),
}

impl<'a> KeyRef<'a> {
    /// The key of a value.
    pub fn of(v: &'a Value) -> KeyRef<'a> {
        match v {
            Value::Null => KeyRef::Null,
            Value::Bool(b) => KeyRef::Bool(*b),
            Value::Int(i) => KeyRef::Int(i64::from(*i)),
            Value::Long(i) => KeyRef::Int(*i),
            Value::Real(f) | Value::Decimal(f) => {
                if f.is_nan() {
                    KeyRef::Null
                } else if f.fract() == 0.0 && f.abs() < 9e15 {
                    KeyRef::Int(*f as i64)
                } else {
                    KeyRef::Float(f.to_bits())
                }
            }
            Value::String(s) | Value::Guid(s) => KeyRef::Str(s),
            Value::DateTime(t) => KeyRef::DateTime(*t),
            Value::TimeSpan(t) => KeyRef::TimeSpan(*t),
            Value::Dynamic(j) => match &**j {
                serde_json::Value::Null => KeyRef::Null,
                serde_json::Value::String(s) => KeyRef::Str(s),
                other => KeyRef::Json(other.to_string()),
            },
        }
    }
}

/// Whether two cells are the same group key (as [`KeyRef`] says), cheaply for the usual cases.
fn same_key(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => std::sync::Arc::ptr_eq(x, y) || x == y,
        (Value::Long(x), Value::Long(y)) | (Value::DateTime(x), Value::DateTime(y)) => x == y,
        _ => KeyRef::of(a) == KeyRef::of(b),
    }
}

/// Groups rows by key without allocating per row: a hash table of group ids whose keys are
/// kept once per group.
#[derive(Debug, Default)]
pub struct Grouper {
    /// (hash, group id): the hash is kept so growing the table never rehashes keys, and most
    /// mismatches are rejected without comparing them.
    table: hashbrown::HashTable<(u64, usize)>,
    hasher: hashbrown::DefaultHashBuilder,
    /// The key of each group, in order of first appearance.
    pub keys: Vec<Vec<Value>>,
    /// A direct-mapped cache from a key's *identity* (strings by address, scalars by bits) to
    /// its group, so the usual rows — whose strings are shared `Arc`s of a few distinct
    /// values — skip hashing and comparing text. Empty until first used.
    memo: Vec<MemoEntry>,
}

/// Slots in [`Grouper`]'s memo (a power of two).
const MEMO_SLOTS: usize = 4096;
/// Keys of up to this many cells use the memo.
const MEMO_CELLS: usize = 4;

/// One memo slot: the identity of a key's cells and its group (`usize::MAX` when empty).
#[derive(Debug, Clone, Copy)]
struct MemoEntry {
    ident: [(u8, u64); MEMO_CELLS],
    group: usize,
}

/// A cell's identity: equal identities mean equal values (hence equal keys). Strings are
/// identified by address, which is sound only while the group's own key holds that very
/// `Arc` — [`Grouper::group_of`] memoises a key only then, so the address cannot be reused.
fn identity(v: &Value) -> Option<(u8, u64)> {
    Some(match v {
        Value::Null => (0, 0),
        Value::Bool(b) => (1, u64::from(*b)),
        Value::Int(i) => (2, *i as u64),
        Value::Long(i) => (3, *i as u64),
        Value::Real(f) => (4, f.to_bits()),
        Value::Decimal(f) => (5, f.to_bits()),
        Value::String(s) => (6, std::sync::Arc::as_ptr(s).cast::<u8>() as usize as u64),
        Value::Guid(s) => (7, std::sync::Arc::as_ptr(s).cast::<u8>() as usize as u64),
        Value::DateTime(t) => (8, *t as u64),
        Value::TimeSpan(t) => (9, *t as u64),
        Value::Dynamic(_) => return None,
    })
}

impl Grouper {
    fn hash(&self, cells: &[&Value]) -> u64 {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut h = self.hasher.build_hasher();
        for c in cells {
            KeyRef::of(c).hash(&mut h);
        }
        h.finish()
    }

    /// The group of a key, if it has one.
    pub fn find(&self, cells: &[&Value]) -> Option<usize> {
        let hash = self.hash(cells);
        self.table.find(hash, |&(h, g)| h == hash && self.keys[g].iter().zip(cells).all(|(a, b)| same_key(a, b))).map(|&(_, g)| g)
    }

    /// The group of a key (given as borrowed cells), creating it when new.
    pub fn group_of(&mut self, cells: &[&Value]) -> usize {
        // The memo first: a key's identity and its slot, when every cell has one.
        let mut ident = [(0u8, 0u64); MEMO_CELLS];
        let mut slot = None;
        if cells.len() <= MEMO_CELLS && cells.iter().enumerate().all(|(i, c)| identity(c).map(|id| ident[i] = id).is_some()) {
            let mut h = 0x9e37_79b9_7f4a_7c15u64;
            for &(tag, bits) in &ident[..cells.len()] {
                h = (h ^ bits ^ u64::from(tag)).wrapping_mul(0xff51_afd7_ed55_8ccd).rotate_left(29);
            }
            let s = (h >> 40) as usize & (MEMO_SLOTS - 1);
            if self.memo.is_empty() {
                self.memo = vec![MemoEntry { ident: [(0, 0); MEMO_CELLS], group: usize::MAX }; MEMO_SLOTS];
            }
            let entry = self.memo[s];
            if entry.group != usize::MAX && entry.ident == ident {
                return entry.group;
            }
            slot = Some(s);
        }
        let g = self.lookup_or_insert(cells);
        // Memoise only when the group's own key holds every string cell's `Arc` (see `identity`).
        if let Some(s) = slot {
            let owned = self.keys[g].iter().zip(cells).all(|(k, c)| match (k, c) {
                (Value::String(a), Value::String(b)) | (Value::Guid(a), Value::Guid(b)) => std::sync::Arc::ptr_eq(a, b),
                (Value::String(_) | Value::Guid(_), _) | (_, Value::String(_) | Value::Guid(_)) => false,
                _ => true,
            });
            if owned {
                self.memo[s] = MemoEntry { ident, group: g };
            }
        }
        g
    }

    fn lookup_or_insert(&mut self, cells: &[&Value]) -> usize {
        let hash = self.hash(cells);
        let keys = &self.keys;
        if let Some(&(_, g)) =
            self.table.find(hash, |&(h, g)| h == hash && keys[g].iter().zip(cells).all(|(a, b)| same_key(a, b)))
        {
            return g;
        }
        let g = self.keys.len();
        self.keys.push(cells.iter().map(|v| (*v).clone()).collect());
        self.table.insert_unique(hash, (hash, g), |&(h, _)| h);
        g
    }
}

/// The state of one aggregation for one group.
#[derive(Debug, Clone)]
pub enum Acc {
    Count(i64),
    Sum {
        int: i64,
        real: f64,
        any_real: bool,
        seen: bool,
    },
    Avg {
        sum: f64,
        n: i64,
    },
    Best(Option<Value>),
    Distinct(HashSet<KeyPart>),
    Values(Vec<Value>),
    /// Percentile input while every value is a real: 8 bytes a value instead of 24.
    Reals(Vec<f64>),
    Moments {
        n: f64,
        mean: f64,
        m2: f64,
    },
    List(Vec<serde_json::Value>),
    Set(Vec<serde_json::Value>, HashSet<String>),
    Bag(serde_json::Map<String, serde_json::Value>),
    Arg(Option<(Value, Vec<Value>)>),
    Any(Option<Vec<Value>>),
}

/// Cap on `make_list`/`make_set` sizes, as Kusto's default.
const LIST_CAP: usize = 1_048_576;

impl Acc {
    /// A fresh accumulator.
    pub fn new(kind: &AggKind) -> Acc {
        match kind {
            AggKind::Count | AggKind::CountIf => Acc::Count(0),
            AggKind::Sum | AggKind::SumIf => Acc::Sum { int: 0, real: 0.0, any_real: false, seen: false },
            AggKind::Avg | AggKind::AvgIf => Acc::Avg { sum: 0.0, n: 0 },
            AggKind::Min | AggKind::Max | AggKind::MinIf | AggKind::MaxIf => Acc::Best(None),
            AggKind::DCount | AggKind::DCountIf => Acc::Distinct(HashSet::new()),
            AggKind::Percentiles(_) => Acc::Reals(Vec::new()),
            AggKind::Stdev | AggKind::StdevIf | AggKind::Variance | AggKind::VarianceIf => {
                Acc::Moments { n: 0.0, mean: 0.0, m2: 0.0 }
            }
            AggKind::MakeList | AggKind::MakeListIf => Acc::List(Vec::new()),
            AggKind::MakeSet | AggKind::MakeSetIf => Acc::Set(Vec::new(), HashSet::new()),
            AggKind::MakeBag => Acc::Bag(serde_json::Map::new()),
            AggKind::ArgMax | AggKind::ArgMin => Acc::Arg(None),
            AggKind::Any => Acc::Any(None),
        }
    }

    /// Add one row: `args` are the evaluated arguments (the predicate last for `…if`).
    pub fn add(&mut self, kind: &AggKind, args: &[Value]) {
        let mut args = args;
        if kind.has_predicate() {
            let Some((pred, rest)) = args.split_last() else {
                return;
            };
            if undyn(pred) != Value::Bool(true) {
                return;
            }
            args = rest;
        }
        let v = args.first().map(undyn).unwrap_or(Value::Null);
        match self {
            Acc::Count(n) => {
                if matches!(kind, AggKind::Count) && !args.is_empty() && v.is_null() {
                    return;
                }
                *n += 1;
            }
            Acc::Sum { int, real, any_real, seen } => match v {
                Value::Int(i) => {
                    *int = int.wrapping_add(i64::from(i));
                    *seen = true;
                }
                Value::Long(i) | Value::TimeSpan(i) => {
                    *int = int.wrapping_add(i);
                    *seen = true;
                }
                other => {
                    if let Some(f) = other.as_f64().filter(|f| !f.is_nan()) {
                        *real += f;
                        *any_real = true;
                        *seen = true;
                    }
                }
            },
            Acc::Avg { sum, n } => {
                let x = match v {
                    Value::TimeSpan(t) | Value::DateTime(t) => Some(t as f64),
                    other => other.as_f64().filter(|f| !f.is_nan()),
                };
                if let Some(x) = x {
                    *sum += x;
                    *n += 1;
                }
            }
            Acc::Best(best) => {
                if v.is_null() {
                    return;
                }
                let want_max = matches!(kind, AggKind::Max | AggKind::MaxIf);
                let replace = match best {
                    None => true,
                    Some(b) => compare(&v, b).is_some_and(|o| if want_max { o.is_gt() } else { o.is_lt() }),
                };
                if replace {
                    *best = Some(v);
                }
            }
            Acc::Distinct(set) => {
                if !v.is_null() {
                    set.insert(KeyPart::of(&v));
                }
            }
            Acc::Values(values) => {
                if !v.is_null() {
                    values.push(v);
                }
            }
            Acc::Reals(xs) => match v {
                Value::Real(x) if !x.is_nan() => xs.push(x),
                Value::Null => {}
                other if other.is_null() => {}
                other => {
                    let mut values: Vec<Value> = xs.iter().map(|x| Value::Real(*x)).collect();
                    values.push(other);
                    *self = Acc::Values(values);
                }
            },
            Acc::Moments { n, mean, m2 } => {
                if let Some(x) = v.as_f64().filter(|f| !f.is_nan()) {
                    *n += 1.0;
                    let delta = x - *mean;
                    *mean += delta / *n;
                    *m2 += delta * (x - *mean);
                }
            }
            Acc::List(list) => {
                if !v.is_null() && list.len() < LIST_CAP {
                    list.push(to_json(&args[0]));
                }
            }
            Acc::Set(list, seen) => {
                if !v.is_null() && list.len() < LIST_CAP {
                    let j = to_json(&args[0]);
                    if seen.insert(j.to_string()) {
                        list.push(j);
                    }
                }
            }
            Acc::Bag(map) => {
                if let Value::Dynamic(j) = &args[0]
                    && let Some(o) = j.as_object()
                {
                    for (k, val) in o {
                        map.entry(k.clone()).or_insert_with(|| val.clone());
                    }
                }
            }
            Acc::Arg(best) => {
                if v.is_null() {
                    return;
                }
                let want_max = matches!(kind, AggKind::ArgMax);
                let replace = match best {
                    None => true,
                    Some((b, _)) => compare(&v, b).is_some_and(|o| if want_max { o.is_gt() } else { o.is_lt() }),
                };
                if replace {
                    *best = Some((v, args[1..].to_vec()));
                }
            }
            Acc::Any(row) => {
                if row.is_none() {
                    *row = Some(args.to_vec());
                }
            }
        }
    }

    /// Fold another accumulator of the same aggregation into this one. `other` saw rows that
    /// come after this one's, so order-sensitive results (`make_list`, `take_any`, ties of
    /// `arg_max`) are the same as if one accumulator had seen every row.
    pub fn merge(&mut self, kind: &AggKind, other: Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Sum { int, real, any_real, seen }, Acc::Sum { int: i2, real: r2, any_real: a2, seen: s2 }) => {
                *int = int.wrapping_add(i2);
                *real += r2;
                *any_real |= a2;
                *seen |= s2;
            }
            (Acc::Avg { sum, n }, Acc::Avg { sum: s2, n: n2 }) => {
                *sum += s2;
                *n += n2;
            }
            (Acc::Best(best), Acc::Best(Some(v))) => {
                let want_max = matches!(kind, AggKind::Max | AggKind::MaxIf);
                let replace = match best {
                    None => true,
                    Some(b) => compare(&v, b).is_some_and(|o| if want_max { o.is_gt() } else { o.is_lt() }),
                };
                if replace {
                    *best = Some(v);
                }
            }
            (Acc::Distinct(a), Acc::Distinct(b)) => a.extend(b),
            (Acc::Values(a), Acc::Values(b)) => a.extend(b),
            (Acc::Reals(a), Acc::Reals(b)) => a.extend(b),
            (Acc::Values(a), Acc::Reals(b)) => a.extend(b.into_iter().map(Value::Real)),
            (this @ Acc::Reals(_), Acc::Values(b)) => {
                let Acc::Reals(a) = std::mem::replace(this, Acc::Values(Vec::new())) else { return };
                *this = Acc::Values(a.into_iter().map(Value::Real).chain(b).collect());
            }
            (Acc::Moments { n, mean, m2 }, Acc::Moments { n: n2, mean: mean2, m2: m22 })
                // Chan et al.'s parallel variance.
                if n2 > 0.0 => {
                    let total = *n + n2;
                    let delta = mean2 - *mean;
                    *m2 += m22 + delta * delta * *n * n2 / total;
                    *mean += delta * n2 / total;
                    *n = total;
                }
            (Acc::List(a), Acc::List(b)) => {
                let room = LIST_CAP.saturating_sub(a.len());
                a.extend(b.into_iter().take(room));
            }
            (Acc::Set(a, seen), Acc::Set(b, _)) => {
                for j in b {
                    if a.len() < LIST_CAP && seen.insert(j.to_string()) {
                        a.push(j);
                    }
                }
            }
            (Acc::Bag(a), Acc::Bag(b)) => {
                for (k, v) in b {
                    a.entry(k).or_insert(v);
                }
            }
            (Acc::Arg(best), Acc::Arg(Some((v, row)))) => {
                let want_max = matches!(kind, AggKind::ArgMax);
                let replace = match best {
                    None => true,
                    Some((b, _)) => compare(&v, b).is_some_and(|o| if want_max { o.is_gt() } else { o.is_lt() }),
                };
                if replace {
                    *best = Some((v, row));
                }
            }
            (Acc::Any(row), Acc::Any(other))
                if row.is_none() => {
                    *row = other;
                }
            _ => {}
        }
    }

    /// The result(s): one value, or several for `percentiles` and `arg_max`/`arg_min`.
    pub fn finish(&self, kind: &AggKind, arg_type: Option<Type>, extra: usize) -> Vec<Value> {
        match self {
            Acc::Count(n) => vec![Value::Long(*n)],
            Acc::Sum { int, real, any_real, seen } => vec![if !seen {
                match arg_type {
                    Some(Type::Int | Type::Long) => Value::Long(0),
                    _ => Value::Null,
                }
            } else if *any_real {
                Value::Real(*real + *int as f64)
            } else if arg_type == Some(Type::TimeSpan) {
                Value::TimeSpan(*int)
            } else if matches!(arg_type, Some(Type::Real | Type::Decimal)) {
                Value::Real(*int as f64)
            } else {
                Value::Long(*int)
            }],
            Acc::Avg { sum, n } => vec![if *n == 0 {
                Value::Null
            } else {
                let avg = sum / *n as f64;
                match arg_type {
                    Some(Type::TimeSpan) => Value::TimeSpan(avg.round() as i64),
                    Some(Type::DateTime) => Value::DateTime(avg.round() as i64),
                    _ => Value::Real(avg),
                }
            }],
            Acc::Best(best) => vec![best.clone().unwrap_or(Value::Null)],
            Acc::Distinct(set) => vec![Value::Long(set.len() as i64)],
            Acc::Reals(xs) => {
                let AggKind::Percentiles(ps) = kind else { return vec![Value::Null] };
                if xs.is_empty() {
                    return vec![Value::Null; ps.len()];
                }
                let mut xs = xs.clone();
                ps.iter()
                    .map(|p| {
                        let k = (((p / 100.0) * xs.len() as f64).ceil() as usize).clamp(1, xs.len()) - 1;
                        let (_, x, _) = xs.select_nth_unstable_by(k, f64::total_cmp);
                        Value::Real(*x)
                    })
                    .collect()
            }
            Acc::Values(values) => {
                let AggKind::Percentiles(ps) = kind else {
                    return vec![Value::Null];
                };
                if values.is_empty() {
                    return vec![Value::Null; ps.len()];
                }
                let rank_of = |p: f64, n: usize| (((p / 100.0) * n as f64).ceil() as usize).clamp(1, n) - 1;
                // Reals (the common case): select the nearest rank in linear time on plain floats.
                if values.iter().all(|v| matches!(v, Value::Real(_))) {
                    let mut xs: Vec<f64> = values.iter().map(|v| if let Value::Real(x) = v { *x } else { 0.0 }).collect();
                    return ps
                        .iter()
                        .map(|p| {
                            let k = rank_of(*p, xs.len());
                            let (_, x, _) = xs.select_nth_unstable_by(k, f64::total_cmp);
                            Value::Real(*x)
                        })
                        .collect();
                }
                let mut sorted = values.clone();
                sorted.sort_by(|a, b| compare(a, b).unwrap_or(std::cmp::Ordering::Equal));
                ps.iter()
                    .map(|p| {
                        if sorted.is_empty() {
                            return Value::Null;
                        }
                        // Nearest rank.
                        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
                        sorted[rank.clamp(1, sorted.len()) - 1].clone()
                    })
                    .collect()
            }
            Acc::Moments { n, m2, .. } => {
                let variance = if *n > 1.0 {
                    m2 / (n - 1.0)
                } else if *n == 1.0 {
                    0.0
                } else {
                    f64::NAN
                };
                let v = match kind {
                    AggKind::Stdev | AggKind::StdevIf => variance.sqrt(),
                    _ => variance,
                };
                vec![if v.is_nan() { Value::Null } else { Value::Real(v) }]
            }
            Acc::List(list) => vec![Value::Dynamic(serde_json::Value::Array(list.clone()).into())],
            Acc::Set(list, _) => vec![Value::Dynamic(serde_json::Value::Array(list.clone()).into())],
            Acc::Bag(map) => vec![Value::Dynamic(serde_json::Value::Object(map.clone()).into())],
            Acc::Arg(best) => match best {
                Some((v, rest)) => std::iter::once(v.clone()).chain(rest.iter().cloned()).collect(),
                None => vec![Value::Null; 1 + extra],
            },
            Acc::Any(row) => match row {
                Some(values) => values.clone(),
                None => vec![Value::Null; 1 + extra],
            },
        }
    }
}
