//! VM size choice: which sizes a fleet lists, in which order.
//!
//! Compute Fleet replaces evicted spot VMs from any size the fleet lists and needs 3–10 sizes to
//! maintain spot capacity (see `../shared/notes/scaling-and-evals.md` §3); a fleet on one size
//! loses its spot capacity whenever that one pool dries. So the planner keeps at least
//! [`MIN_SPOT_SIZES`] sizes listed, of the same kind of service (CPU, or the same accelerator),
//! ranked by price per unit of service (a vCPU, or a GPU) weighted by the size's published
//! eviction band. Azure publishes only the band, so it is used as an ordinal risk class, not a
//! probability: with [`EVICTION_RISK_WEIGHT`] = 10, each band up (5 points) adds half the
//! size's price to its score (0–5 % scores 1.25× the price, 5–10 % 1.75×, 10–15 % 2.25×), so a
//! size one band riskier must be about 29 % (0–5 against 5–10) or 22 % (5–10 against 10–15)
//! cheaper per unit to rank above a safer one, and a size with no published band ranks as the
//! riskiest (Karpenter's lesson: a policy that
//! only chases price walks down to the cheapest, most-evicted pool).

use fleetpilot_core::{EvictionBand, PriceTable, SizeInfo};

/// Sizes a fleet lists at least (Compute Fleet's minimum for spot with `maintain`).
///
/// The ranking uses the embedded price table, which is [`PRICES_REGION`]'s.
pub const MIN_SPOT_SIZES: usize = 3;

/// The region the embedded price table describes: sizes are only re-listed for fleets there.
pub const PRICES_REGION: &str = "eastus";

/// Sizes a fleet lists at most (Compute Fleet's maximum for spot with `maintain`).
pub const MAX_SPOT_SIZES: usize = 10;

/// How much a size's score grows per unit of eviction risk (the band's midpoint as a fraction).
pub const EVICTION_RISK_WEIGHT: f64 = 10.0;

/// The risk taken for a size with no published band: the worst band's (`20+`) midpoint.
pub const UNKNOWN_BAND_RISK: f64 = 0.25;

/// One size, scored.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedSize {
    /// Azure name.
    pub name: String,
    /// Units of service one VM gives: vCPUs, or GPUs for a GPU size.
    pub units: f64,
    /// What a unit is: `vCPU` or `GPU`.
    pub unit: &'static str,
    /// Spot price per unit of service and hour (USD).
    pub spot_usd_per_unit_hour: f64,
    /// The eviction risk used: the band's midpoint, or [`UNKNOWN_BAND_RISK`].
    pub eviction_risk: f64,
    /// The published band, when there is one.
    pub band: Option<EvictionBand>,
    /// `spot_usd_per_unit_hour × (1 + EVICTION_RISK_WEIGHT × eviction_risk)`: lower is better.
    pub score: f64,
}

/// Units of service one VM of a size gives (its GPUs for a GPU size, else its vCPUs; at least
/// one), and what a unit is.
pub fn service_units(info: &SizeInfo) -> (f64, &'static str) {
    let (units, unit) = if info.gpus > 0 { (info.gpus, "GPU") } else { (info.vcpus, "vCPU") };
    (f64::from(units.max(1)), unit)
}

impl RankedSize {
    fn of(info: &SizeInfo) -> Self {
        let (units, unit) = service_units(info);
        let per_unit = info.spot_usd_hour / units;
        let eviction_risk = info.eviction_band.map_or(UNKNOWN_BAND_RISK, |b| b.mid_fraction());
        Self {
            name: info.name.clone(),
            units,
            unit,
            spot_usd_per_unit_hour: per_unit,
            eviction_risk,
            band: info.eviction_band,
            score: per_unit * (1.0 + EVICTION_RISK_WEIGHT * eviction_risk),
        }
    }

    /// `Standard_D4s_v5 (0.0101 USD/vCPU·h spot, band 0–5 %)`.
    pub fn describe(&self) -> String {
        let band = match self.band {
            Some(b) => format!("eviction band {:.0}–{:.0} %", b.low_pct, b.high_pct),
            None => "no published eviction band".to_string(),
        };
        format!("{} ({:.4} USD/{}·h spot, {band})", self.name, self.spot_usd_per_unit_hour, self.unit)
    }
}

/// The kind of service a size gives: `None` for CPU, the accelerator's name for a GPU size
/// (`Standard_NC24ads_A100_v4` → `A100`): sizes of different kinds are not interchangeable.
fn kind(info: &SizeInfo) -> Option<String> {
    if info.gpus == 0 {
        return None;
    }
    let parts: Vec<&str> = info.name.split('_').collect();
    Some(if parts.len() >= 4 { parts[2..parts.len() - 1].join("_").to_ascii_uppercase() } else { info.name.to_ascii_uppercase() })
}

/// The sizes named that the table knows, best first (ties keep the order given).
pub fn rank(prices: &PriceTable, names: &[String]) -> Vec<RankedSize> {
    let mut ranked: Vec<RankedSize> = names.iter().filter_map(|n| prices.get(n)).map(RankedSize::of).collect();
    // Scores equal to a nano-dollar are ties (D4s_v5 and D8s_v5 cost the same per vCPU).
    ranked.sort_by_key(|r| (r.score * 1e9).round() as i64);
    ranked
}

/// A change of the sizes a fleet lists.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeChoice {
    /// The sizes to list, best first.
    pub sizes: Vec<String>,
    /// Why, with the numbers.
    pub why: String,
}

/// The sizes fleet `current` should list, when that differs from what it lists: every size it
/// lists that `allowed` permits (all when `allowed` is empty) is kept; sizes of the same kind
/// are added, best first, until there are [`MIN_SPOT_SIZES`]; the list is ordered by score.
/// `None` when nothing should change, when fewer than [`MIN_SPOT_SIZES`] of the kind are known
/// and allowed, or when the table does not know the fleet's first size (no basis for a
/// judgement).
pub fn choose(prices: &PriceTable, current: &[String], allowed: &[String]) -> Option<SizeChoice> {
    let primary = prices.get(current.first()?)?;
    let fleet_kind = kind(primary);
    let permitted = |name: &str| allowed.is_empty() || allowed.iter().any(|a| a.eq_ignore_ascii_case(name));
    let same_kind = |info: &SizeInfo| kind(info) == fleet_kind && (info.gpus > 0) == (primary.gpus > 0);
    // What it lists and may keep; sizes the table does not know stay, after the ranked ones.
    let kept: Vec<&String> = current.iter().filter(|n| permitted(n)).collect();
    let unknown: Vec<String> = kept.iter().filter(|n| prices.get(n).is_none()).map(|n| n.to_string()).collect();
    let mut listed: Vec<String> = kept.iter().filter(|n| prices.get(n).is_some()).map(|n| n.to_string()).collect();
    let mut candidates: Vec<String> = prices
        .iter()
        .filter(|i| same_kind(i) && permitted(&i.name) && !listed.iter().any(|l| l.eq_ignore_ascii_case(&i.name)))
        .map(|i| i.name.clone())
        .collect();
    candidates.sort();
    let mut added = Vec::new();
    for candidate in rank(prices, &candidates) {
        if listed.len() + unknown.len() >= MIN_SPOT_SIZES {
            break;
        }
        listed.push(candidate.name.clone());
        added.push(candidate);
    }
    let ranked = rank(prices, &listed);
    let mut sizes: Vec<String> = ranked.iter().map(|r| r.name.clone()).collect();
    sizes.extend(unknown);
    sizes.truncate(MAX_SPOT_SIZES);
    let same = sizes.len() == current.len() && sizes.iter().zip(current).all(|(a, b)| a.eq_ignore_ascii_case(b));
    // Fewer than three sizes would be refused for a spot fleet with `maintain` (and would take
    // the capacity change proposed with them down too): better the list the fleet has.
    if same || sizes.len() < MIN_SPOT_SIZES {
        return None;
    }
    let mut reasons = Vec::new();
    let dropped: Vec<&String> = current.iter().filter(|n| !permitted(n)).collect();
    if !dropped.is_empty() {
        reasons.push(format!("the policy does not allow {}", dropped.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")));
    }
    if !added.is_empty() {
        reasons.push(format!(
            "the fleet listed {} size(s) and Compute Fleet replaces evicted spot only from the sizes listed ({MIN_SPOT_SIZES}–{MAX_SPOT_SIZES} to maintain spot), so {} joins",
            current.len(),
            added.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(" and ")
        ));
    }
    let order = ranked.iter().map(RankedSize::describe).collect::<Vec<_>>().join(", ");
    reasons.push(format!("ranked by spot price per unit of service weighted by eviction band: {order}"));
    Some(SizeChoice { sizes, why: reasons.join("; ") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ranks_by_price_per_unit_weighted_by_the_eviction_band() {
        let prices = PriceTable::embedded();
        let ranked = rank(&prices, &names(&["Standard_E4s_v5", "Standard_D4s_v3", "Standard_D8s_v5", "Standard_D4s_v5"]));
        let order: Vec<&str> = ranked.iter().map(|r| r.name.as_str()).collect();
        // D4s_v5 and D8s_v5 cost the same per vCPU (ties keep the order given); E4s_v5 is
        // dearer per vCPU; D4s_v3 is the cheapest per vCPU but has no published band.
        assert_eq!(order, ["Standard_D8s_v5", "Standard_D4s_v5", "Standard_E4s_v5", "Standard_D4s_v3"]);
        assert!(ranked[3].spot_usd_per_unit_hour < ranked[0].spot_usd_per_unit_hour);
        assert!(ranked[3].band.is_none());
        // GPUs: the T4 in band 10–15 % against the one in 5–10 %.
        let gpus = rank(&prices, &names(&["Standard_NC4as_T4_v3", "Standard_NC8as_T4_v3"]));
        let t4 = |n: &str| gpus.iter().find(|r| r.name == n).unwrap().clone();
        let (small, large) = (t4("Standard_NC4as_T4_v3"), t4("Standard_NC8as_T4_v3"));
        assert!(small.spot_usd_per_unit_hour < large.spot_usd_per_unit_hour, "the small T4 is cheaper per GPU");
        assert!(small.eviction_risk > large.eviction_risk, "and riskier");
        assert_eq!(gpus[0].name, "Standard_NC4as_T4_v3", "30 % cheaper per GPU outweighs one band of risk");
    }

    #[test]
    fn a_fleet_on_one_size_is_diversified_to_three_of_the_same_kind() {
        let prices = PriceTable::embedded();
        let choice = choose(&prices, &names(&["Standard_D4s_v5"]), &[]).expect("one size is too few");
        assert_eq!(choice.sizes, ["Standard_D4s_v5", "Standard_D8s_v5", "Standard_E4s_v5"], "{}", choice.why);
        assert!(choice.why.contains("replaces evicted spot only from the sizes listed"), "{}", choice.why);
        // No GPU size joins a CPU fleet, and no A100 joins a T4 fleet: the table has two T4
        // sizes, too few to list, so the fleet keeps its list.
        assert_eq!(choose(&prices, &names(&["Standard_NC8as_T4_v3"]), &[]), None);
    }

    #[test]
    fn the_policy_limits_the_choice_and_a_good_list_is_left_alone() {
        let prices = PriceTable::embedded();
        let allowed = names(&["Standard_D4s_v5", "Standard_D8s_v5", "Standard_E4s_v5"]);
        // The reference fleet's list is already ranked: nothing to do.
        assert_eq!(choose(&prices, &allowed, &allowed), None);
        // D4s_v3 (no band) is permitted only when nothing better is: here it is not needed.
        let choice = choose(&prices, &names(&["Standard_E4s_v5"]), &[]).unwrap();
        assert!(!choice.sizes.contains(&"Standard_D4s_v3".to_string()), "{:?}", choice.sizes);
        // A listed size the policy does not allow is dropped, and replaced.
        let choice = choose(&prices, &names(&["Standard_D4s_v5", "Standard_D4s_v3"]), &allowed).unwrap();
        assert_eq!(choice.sizes, ["Standard_D4s_v5", "Standard_D8s_v5", "Standard_E4s_v5"]);
        assert!(choice.why.contains("does not allow Standard_D4s_v3"), "{}", choice.why);
        // A policy that leaves two of the kind allowed: no list of two is proposed.
        let two = names(&["Standard_D4s_v5", "Standard_D8s_v5"]);
        assert_eq!(choose(&prices, &allowed, &two), None);
        // A size the table does not know gives no basis.
        assert_eq!(choose(&prices, &names(&["Standard_Q1_v9"]), &[]), None);
        // Deterministic.
        assert_eq!(choose(&prices, &names(&["Standard_D4s_v5"]), &[]), choose(&prices, &names(&["Standard_D4s_v5"]), &[]));
    }
}
