//! Property tests of the KQL engine: the parser never panics, and `where` and `summarize`
//! agree with a naive reference on random tables.

use std::collections::BTreeMap;
use std::sync::Arc;

use fleetpilot_emulator::kql::{self, Column, MapCatalog, Table, Type, Value};
use proptest::prelude::*;

const PIECES: &[&str] = &[
    "T",
    "|",
    "where",
    "a",
    "b",
    ">",
    "<",
    "==",
    "!=",
    "and",
    "or",
    "(",
    ")",
    "1",
    "-2",
    "2.5",
    "\"x\"",
    "'y'",
    "summarize",
    "count()",
    "sum(a)",
    "by",
    "bin(a, 2)",
    "project",
    "extend",
    "c",
    "=",
    ",",
    "take",
    "sort",
    "asc",
    "desc",
    "join",
    "on",
    "$left",
    ".",
    "[",
    "]",
    "{",
    "}",
    "let",
    ";",
    "datatable",
    ":",
    "long",
    "string",
    "dynamic([1,2])",
    "in",
    "!in",
    "has",
    "contains",
    "between",
    "..",
    "ago(1h)",
    "now()",
    "iff",
    "case",
    "mv-expand",
    "make-series",
    "step",
    "parse",
    "with",
    "*",
    "print",
    "range",
    "from",
    "to",
    "\"",
    "@",
    "//",
    "\n",
    "0x",
    "1e",
    "5m",
    "datetime(",
    "timespan(",
    "render",
    "union",
    "distinct",
    "top",
    "10",
];

fn table(rows: &[(Option<i64>, u8)]) -> MapCatalog {
    let a = rows.iter().map(|(a, _)| a.map_or(Value::Null, Value::Long)).collect();
    let b = rows.iter().map(|(_, b)| Value::str(["p", "q", "r"][*b as usize % 3])).collect();
    let t = Table::new(vec![Column::new("a", Type::Long, a), Column::new("b", Type::String, b)]);
    MapCatalog(BTreeMap::from([("T".to_string(), Arc::new(t))]))
}

/// (group, count, count of non-null, sum, min, max)
type Group = (String, i64, i64, i64, Option<i64>, Option<i64>);

fn rows() -> impl Strategy<Value = Vec<(Option<i64>, u8)>> {
    prop::collection::vec((prop::option::weighted(0.85, -50i64..50), 0u8..3), 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_parser_and_evaluator_never_panic(pieces in prop::collection::vec(prop::sample::select(PIECES), 0..25)) {
        let query = pieces.join(" ");
        let catalog = table(&[(Some(1), 0), (None, 1), (Some(3), 2)]);
        let _ = kql::run(&query, &catalog, &kql::Options::default());
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,60}") {
        let _ = kql::run(&text, &MapCatalog::default(), &kql::Options::default());
    }

    #[test]
    fn where_agrees_with_a_naive_filter(data in rows(), threshold in -50i64..50, op in 0usize..4) {
        let ops = [">", "<", "==", "!="];
        let query = format!("T | where a {} {threshold}", ops[op]);
        let got = kql::run(&query, &table(&data), &kql::Options::default()).unwrap();
        let expected: Vec<Value> = data
            .iter()
            .filter_map(|(a, _)| a.filter(|a| match op { 0 => *a > threshold, 1 => *a < threshold, 2 => *a == threshold, _ => *a != threshold }))
            .map(Value::Long)
            .collect();
        prop_assert_eq!(got.columns[0].values.as_slice(), expected.as_slice());
    }

    #[test]
    fn summarize_agrees_with_a_naive_grouping(data in rows()) {
        let got = kql::run("T | summarize c = count(), n = count(a), s = sum(a), lo = min(a), hi = max(a) by b", &table(&data), &kql::Options::default()).unwrap();
        let mut expected: Vec<Group> = Vec::new();
        for (a, b) in &data {
            let key = ["p", "q", "r"][*b as usize % 3].to_string();
            let i = match expected.iter().position(|e| e.0 == key) {
                Some(i) => i,
                None => {
                    expected.push((key, 0, 0, 0, None, None));
                    expected.len() - 1
                }
            };
            let e = &mut expected[i];
            e.1 += 1;
            if let Some(a) = a {
                e.2 += 1;
                e.3 += a;
                e.4 = Some(e.4.map_or(*a, |m: i64| m.min(*a)));
                e.5 = Some(e.5.map_or(*a, |m: i64| m.max(*a)));
            }
        }
        prop_assert_eq!(got.rows, expected.len());
        for (r, e) in expected.iter().enumerate() {
            let cell = |c: usize| got.columns[c].values[r].clone();
            prop_assert_eq!(cell(0), Value::str(&e.0));
            prop_assert_eq!(cell(1), Value::Long(e.1));
            prop_assert_eq!(cell(2), Value::Long(e.2));
            prop_assert_eq!(cell(3), Value::Long(e.3));
            prop_assert_eq!(cell(4), e.4.map_or(Value::Null, Value::Long));
            prop_assert_eq!(cell(5), e.5.map_or(Value::Null, Value::Long));
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let query = format!("print x = {}1{}", "(".repeat(5000), ")".repeat(5000));
    let err = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || kql::run(&query, &MapCatalog::default(), &kql::Options::default()).unwrap_err())
        .unwrap()
        .join()
        .unwrap();
    assert!(err.message.contains("nests expressions"), "{}", err.message);
    let tabular = format!("{}T{}", "(".repeat(5000), ")".repeat(5000));
    let err = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || kql::run(&tabular, &MapCatalog::default(), &kql::Options::default()).unwrap_err())
        .unwrap()
        .join()
        .unwrap();
    assert!(err.message.contains("nests expressions"), "{}", err.message);
}

/// Above 200,000 rows summarize runs on several threads; the result must be that of one
/// sequential pass (group order, first values, list order, variance).
#[test]
fn parallel_summarize_equals_a_sequential_pass() {
    let n = 300_000i64;
    let t = Table::new(vec![
        Column::new("k", Type::Long, (0..n).map(|i| Value::Long(i % 7)).collect()),
        Column::new("v", Type::Long, (0..n).map(Value::Long).collect()),
        Column::new("x", Type::Real, (0..n).map(|i| Value::Real((i % 1000) as f64)).collect()),
    ]);
    let catalog = MapCatalog(BTreeMap::from([("T".to_string(), Arc::new(t))]));
    let q = "T | summarize c = count(), s = sum(v), lo = min(v), hi = max(v), first = take_any(v), l = make_list(v), arg_max(v, k), p = percentile(x, 50), var = variance(x), d = dcount(x) by k";
    let got = kql::run(q, &catalog, &kql::Options::default()).unwrap();
    assert_eq!(got.rows, 7);
    for (row, k) in (0..7i64).enumerate() {
        let cell = |name: &str| got.columns[got.index_of(name).unwrap()].values[row].clone();
        let members: Vec<i64> = (0..n).filter(|i| i % 7 == k).collect();
        assert_eq!(cell("k"), Value::Long(k), "groups keep their first-appearance order");
        assert_eq!(cell("c"), Value::Long(members.len() as i64));
        assert_eq!(cell("s"), Value::Long(members.iter().sum()));
        assert_eq!((cell("lo"), cell("hi")), (Value::Long(k), Value::Long(*members.last().unwrap())));
        assert_eq!(cell("first"), Value::Long(k), "take_any keeps the first row");
        let Value::Dynamic(list) = cell("l") else { panic!() };
        let list: Vec<i64> = list.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(list, members, "make_list keeps row order across chunks");
        assert_eq!(cell("d"), Value::Long(1000));
        let Value::Real(var) = cell("var") else { panic!() };
        let xs: Vec<f64> = members.iter().map(|i| (i % 1000) as f64).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let expected = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
        assert!((var - expected).abs() < 1e-6 * expected, "{var} vs {expected}");
    }
}
