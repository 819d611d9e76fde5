//! Per-VM `Heartbeat` and `Perf` rows, generated when a query reads them.
//!
//! Every running VM reports one heartbeat and two counters a minute: at 1,000 VMs that is
//! three million rows a day, most of a large world's telemetry. They are a pure function of
//! when each VM ran, its fleet's load each minute and a hash, so the world records only
//! those (O(VMs + minutes)) and a snapshot materialises the rows a query can see: written
//! at or before the snapshot's time, ingested by then (the delay is drawn from a hash of the
//! row), within retention and within the query's timespan.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::kql::value::TICKS_PER_SECOND;
use crate::kql::{Column, Table, Type, Value};
use crate::logs::INGESTION_COLUMN;

const TICKS_PER_MINUTE: i64 = 60 * TICKS_PER_SECOND;

/// The strings a VM's rows carry.
#[derive(Debug)]
pub struct VmLabels {
    /// `Computer`: `{scale set}_{instance id}`.
    pub computer: Arc<str>,
    /// `ResourceId` of the scale-set VM.
    pub resource_id: Arc<str>,
    /// `_ResourceId`: the same, lower case.
    pub resource_id_lower: Arc<str>,
    /// `CounterPath` of the processor and memory counters.
    pub counter_paths: [Arc<str>; 2],
    /// Resource group.
    pub resource_group: Arc<str>,
    /// Scale set name.
    pub scale_set: Arc<str>,
    /// Subscription id.
    pub subscription: Arc<str>,
}

/// The Perf counters every VM reports: object, counter.
pub const VM_COUNTERS: [(&str, &str); 2] = [("Processor", "% Processor Time"), ("Memory", "% Used Memory")];

impl VmLabels {
    /// The labels of instance `instance_id` of `scale_set`.
    pub fn new(subscription: &str, resource_group: &str, scale_set: &str, instance_id: u64) -> Self {
        let computer = format!("{scale_set}_{instance_id}");
        let id = format!(
            "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.Compute/virtualMachineScaleSets/{scale_set}/virtualMachines/{instance_id}"
        );
        let counter_paths = VM_COUNTERS.map(|(object, counter)| format!("\\\\{computer}\\{object}(_Total)\\{counter}").into());
        Self {
            computer: computer.into(),
            resource_id_lower: id.to_ascii_lowercase().into(),
            resource_id: id.into(),
            counter_paths,
            resource_group: resource_group.into(),
            scale_set: scale_set.into(),
            subscription: subscription.into(),
        }
    }
}

/// Minutes in which one VM was running, without a gap.
#[derive(Debug, Clone)]
struct Span {
    labels: Arc<VmLabels>,
    fleet: usize,
    /// First minute (ticks) it reported.
    from: i64,
    /// Last minute (ticks) it reported.
    last: i64,
}

/// What the world records for per-VM rows.
#[derive(Debug, Clone, Default)]
pub struct VmTelemetry {
    spans: Vec<Span>,
    /// The latest span of each VM, by the address of its labels.
    open: hashbrown::HashMap<usize, usize>,
    /// Fleet names, and each fleet's load by minute (ticks of the minute → load 0..1).
    fleets: Vec<(String, BTreeMap<i64, f64>)>,
}

impl VmTelemetry {
    /// Record `fleet`'s load at `minute` (ticks); returns the fleet's handle for [`Self::report`].
    pub fn fleet_load(&mut self, fleet: &str, minute: i64, load: f64) -> usize {
        let f = match self.fleets.iter().position(|(name, _)| name == fleet) {
            Some(f) => f,
            None => {
                self.fleets.push((fleet.to_string(), BTreeMap::new()));
                self.fleets.len() - 1
            }
        };
        self.fleets[f].1.insert(minute, load);
        f
    }

    /// Record that the VM of `labels`, in fleet handle `fleet`, reported at `minute` (ticks).
    pub fn report(&mut self, fleet: usize, minute: i64, labels: &Arc<VmLabels>) {
        // Keyed by the labels' address: each span holds its labels, so the address is not
        // reused while the entry exists.
        let key = Arc::as_ptr(labels) as usize;
        match self.open.get(&key) {
            Some(&s) if self.spans[s].last == minute - TICKS_PER_MINUTE || self.spans[s].last == minute => {
                self.spans[s].last = minute;
            }
            _ => {
                self.spans.push(Span { labels: labels.clone(), fleet, from: minute, last: minute });
                self.open.insert(key, self.spans.len() - 1);
            }
        }
    }

    /// Whether nothing was reported.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Forget spans and loads older than `horizon` (ticks).
    pub fn forget_before(&mut self, horizon: i64) {
        if self.spans.iter().all(|s| s.last >= horizon) {
            return;
        }
        self.spans.retain(|s| s.last >= horizon);
        self.open = self.spans.iter().enumerate().map(|(i, s)| (Arc::as_ptr(&s.labels) as usize, i)).collect();
        for (_, loads) in &mut self.fleets {
            *loads = loads.split_off(&horizon);
        }
    }

    /// Rows reported (whether ingested or not): for tests and status.
    pub fn reported(&self) -> usize {
        self.spans.iter().map(|s| ((s.last - s.from) / TICKS_PER_MINUTE + 1) as usize).sum()
    }

    /// The `Heartbeat` or `Perf` rows visible at `now` (ticks) with `TimeGenerated` in
    /// `[from, to)`, as a table with `columns`' names and types.
    pub fn table(&self, name: &str, columns: &[(String, Type)], now: i64, from: i64, to: i64) -> Option<Table> {
        let (lo, hi) = crate::logs::ingestion_delay(name);
        let perf = match name {
            "Perf" => true,
            "Heartbeat" => false,
            _ => return None,
        };
        let constant = |v: &str| Role::Const(Value::str(v));
        let roles: Vec<Role> = columns
            .iter()
            .map(|(c, _)| match (c.as_str(), perf) {
                ("TimeGenerated", _) => Role::Time,
                (INGESTION_COLUMN, _) => Role::Ingestion,
                ("Computer", _) => Role::Computer,
                ("_ResourceId", _) => Role::ResourceIdLower,
                ("SourceSystem" | "OSType", _) => constant("Linux"),
                ("Type", _) => constant(name),
                ("InstanceName", true) => constant("_Total"),
                ("ObjectName", true) => Role::Object,
                ("CounterName", true) => Role::Counter,
                ("CounterValue", true) => Role::Reading,
                ("CounterPath", true) => Role::Path,
                ("Category", false) => constant("Azure Monitor Agent"),
                ("OSName", false) => constant("Ubuntu"),
                ("Version", false) => constant("1.33"),
                ("ResourceProvider", false) => constant("Microsoft.Compute"),
                ("ResourceType", false) => constant("virtualMachineScaleSets"),
                ("ResourceId", false) => Role::ResourceId,
                ("ResourceGroup", false) => Role::ResourceGroup,
                ("SubscriptionId", false) => Role::Subscription,
                ("Resource", false) => Role::Resource,
                _ => Role::Const(Value::Null),
            })
            .collect();
        let counters = VM_COUNTERS.map(|(o, c)| (Value::str(o), Value::str(c)));
        let mut values: Vec<Vec<Value>> = columns.iter().map(|_| Vec::new()).collect();
        let kinds: &[usize] = if perf { &[0, 1] } else { &[2] };
        for span in &self.spans {
            let l = &span.labels;
            let loads = &self.fleets[span.fleet].1;
            let mut minute = span
                .from
                .max(from.saturating_add(TICKS_PER_MINUTE - 1).div_euclid(TICKS_PER_MINUTE).saturating_mul(TICKS_PER_MINUTE));
            while minute <= span.last && minute < to {
                let seconds = minute / TICKS_PER_SECOND;
                let wobble = (l.computer.bytes().fold(seconds as u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))) % 100)
                    as f64
                    / 100.0;
                let load = loads.get(&minute).copied().unwrap_or(0.0);
                for &k in kinds {
                    let delay = lo + hash(&l.computer, minute, k) % (hi - lo).max(1);
                    let at = minute + delay as i64 * TICKS_PER_SECOND;
                    if at > now {
                        continue;
                    }
                    for (column, role) in values.iter_mut().zip(&roles) {
                        column.push(match role {
                            Role::Const(v) => v.clone(),
                            Role::Time => Value::DateTime(minute),
                            Role::Ingestion => Value::DateTime(at),
                            Role::Computer => Value::String(l.computer.clone()),
                            Role::ResourceIdLower => Value::String(l.resource_id_lower.clone()),
                            Role::ResourceId => Value::String(l.resource_id.clone()),
                            Role::ResourceGroup => Value::String(l.resource_group.clone()),
                            Role::Subscription => Value::String(l.subscription.clone()),
                            Role::Resource => Value::String(l.scale_set.clone()),
                            Role::Object => counters[k].0.clone(),
                            Role::Counter => counters[k].1.clone(),
                            Role::Path => Value::String(l.counter_paths[k].clone()),
                            Role::Reading => Value::Real(if k == 0 {
                                (1.5 + wobble + 95.0 * load).min(100.0)
                            } else {
                                12.0 + 2.0 * wobble + 60.0 * load
                            }),
                        });
                    }
                }
                minute += TICKS_PER_MINUTE;
            }
        }
        let columns = columns.iter().zip(values).map(|((n, t), v)| Column::new(n.clone(), *t, v)).collect();
        Some(Table::new(columns))
    }
}

/// What a generated column holds.
enum Role {
    Const(Value),
    Time,
    Ingestion,
    Computer,
    ResourceIdLower,
    ResourceId,
    ResourceGroup,
    Subscription,
    Resource,
    Object,
    Counter,
    Path,
    Reading,
}

/// A row's ingestion-delay draw: a hash of the VM, the minute and the row kind.
fn hash(computer: &str, minute: i64, kind: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (minute as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ kind as u64;
    for b in computer.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(name: &str) -> Vec<(String, Type)> {
        let mut cols: Vec<(String, Type)> = crate::logs::schemas()[name].iter().map(|(n, t)| ((*n).to_string(), *t)).collect();
        cols.push((INGESTION_COLUMN.to_string(), Type::DateTime));
        cols
    }

    #[test]
    fn rows_follow_spans_ingestion_retention_and_the_window() {
        let m = TICKS_PER_MINUTE;
        let t0 = 1_000 * m;
        let mut vm = VmTelemetry::default();
        let a = Arc::new(VmLabels::new("sub", "rg", "ss", 0));
        let b = Arc::new(VmLabels::new("sub", "rg", "ss", 1));
        for i in 0..10 {
            let f = vm.fleet_load("fleet", t0 + i * m, 0.5);
            vm.report(f, t0 + i * m, &a);
            if i != 5 {
                vm.report(f, t0 + i * m, &b); // b misses minute 5: two spans
            }
        }
        assert_eq!(vm.reported(), 19);
        // Long after: every row is in; Perf has two rows per VM minute.
        let late = t0 + 60 * m;
        let hb = vm.table("Heartbeat", &columns("Heartbeat"), late, i64::MIN, i64::MAX).unwrap();
        assert_eq!(hb.rows, 19);
        let perf = vm.table("Perf", &columns("Perf"), late, i64::MIN, i64::MAX).unwrap();
        assert_eq!(perf.rows, 38);
        let value = perf.index_of("CounterValue").unwrap();
        assert!(perf.columns[value].values.iter().all(|v| matches!(v, Value::Real(x) if *x > 10.0 && *x <= 100.0)));
        let computer = hb.index_of("Computer").unwrap();
        assert_eq!(hb.columns[computer].values[0], Value::str("ss_0"));
        // Right after the last minute, rows still on their way (30–120 s) are not visible.
        let early = vm.table("Heartbeat", &columns("Heartbeat"), t0 + 9 * m, i64::MIN, i64::MAX).unwrap();
        assert!(early.rows < 19 && early.rows >= 14, "{} rows", early.rows);
        // The window is on TimeGenerated.
        let window = vm.table("Heartbeat", &columns("Heartbeat"), late, t0 + 2 * m, t0 + 4 * m).unwrap();
        assert_eq!(window.rows, 4);
        // Same inputs, same rows.
        assert_eq!(vm.table("Perf", &columns("Perf"), late, i64::MIN, i64::MAX).unwrap(), perf);
        vm.forget_before(t0 + 6 * m);
        assert_eq!(vm.reported(), 14, "the span that ended before the horizon is gone; reads trim the others");
        assert!(vm.table("Other", &columns("Heartbeat"), late, i64::MIN, i64::MAX).is_none());
    }
}
