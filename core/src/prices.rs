//! VM sizes, their prices and spot eviction bands, from the embedded price table.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Priority;

/// The embedded price table for `eastus` (see the README's data attributions).
const EMBEDDED_EASTUS: &str = include_str!("../data/azure_vm_prices_eastus.csv");

/// A spot eviction band as Azure publishes it: a range of percentages.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EvictionBand {
    /// Lower end, percent.
    pub low_pct: f64,
    /// Upper end, percent.
    pub high_pct: f64,
}

impl EvictionBand {
    /// Midpoint of the band as a fraction (`0-5` → 0.025).
    pub fn mid_fraction(&self) -> f64 {
        (self.low_pct + self.high_pct) / 200.0
    }
}

/// One VM size with its shape and prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SizeInfo {
    /// Azure name, e.g. `Standard_D4s_v5`.
    pub name: String,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory in GiB.
    pub memory_gib: f64,
    /// GPUs.
    pub gpus: u32,
    /// Pay-as-you-go (regular priority) price, USD per hour, Linux.
    pub payg_usd_hour: f64,
    /// Spot price, USD per hour, Linux.
    pub spot_usd_hour: f64,
    /// Published spot eviction band, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "EvictionBand")]
    pub eviction_band: Option<EvictionBand>,
}

impl SizeInfo {
    /// Price per hour at a priority.
    pub fn price(&self, priority: Priority) -> f64 {
        match priority {
            Priority::Spot => self.spot_usd_hour,
            Priority::Regular => self.payg_usd_hour,
        }
    }

    /// The quota family of this size (see [`vm_family`]).
    pub fn family(&self) -> String {
        vm_family(&self.name)
    }
}

/// Error reading a price table.
#[derive(Debug, thiserror::Error)]
pub enum PriceTableError {
    /// A line did not have the expected columns.
    #[error("price table line {line}: {reason}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        reason: String,
    },
}

/// VM sizes by name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PriceTable {
    sizes: BTreeMap<String, SizeInfo>,
}

impl PriceTable {
    /// The table that ships with fleetpilot (`eastus`).
    ///
    /// # Panics
    /// Never in practice: the embedded file is checked by a unit test.
    pub fn embedded() -> Self {
        Self::parse_csv(EMBEDDED_EASTUS).expect("embedded price table is valid")
    }

    /// Parse the CSV layout of `azure_vm_prices_*.csv`:
    /// `vm_size,vcpus,memory_gib,gpus,payg_usd_hour,spot_usd_hour,eviction_band,...`.
    ///
    /// # Errors
    /// A line with too few columns or a number that does not parse.
    pub fn parse_csv(text: &str) -> Result<Self, PriceTableError> {
        let mut sizes = BTreeMap::new();
        for (index, line) in text.lines().enumerate().skip(1) {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |reason: String| PriceTableError::BadLine { line: index + 1, reason };
            let cols: Vec<&str> = line.split(',').collect();
            if cols.len() < 7 {
                return Err(bad(format!("expected at least 7 columns, found {}", cols.len())));
            }
            let num = |i: usize| -> Result<f64, PriceTableError> {
                cols[i].trim().parse::<f64>().map_err(|e| bad(format!("column {}: {e}", i + 1)))
            };
            let info = SizeInfo {
                name: cols[0].trim().to_string(),
                vcpus: num(1)? as u32,
                memory_gib: num(2)?,
                gpus: num(3)? as u32,
                payg_usd_hour: num(4)?,
                spot_usd_hour: num(5)?,
                eviction_band: parse_band(cols[6].trim()),
            };
            sizes.insert(info.name.to_ascii_lowercase(), info);
        }
        Ok(Self { sizes })
    }

    /// Look a size up by name, ignoring case as Azure does.
    pub fn get(&self, name: &str) -> Option<&SizeInfo> {
        // Size names are short: lower-case them on the stack, as this runs per VM per minute.
        let mut buf = [0u8; 64];
        match buf.get_mut(..name.len()) {
            Some(lower) => {
                lower.copy_from_slice(name.as_bytes());
                lower.make_ascii_lowercase();
                self.sizes.get(std::str::from_utf8(lower).ok()?)
            }
            None => self.sizes.get(&name.to_ascii_lowercase()),
        }
    }

    /// Every size, ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = &SizeInfo> {
        self.sizes.values()
    }
}

fn parse_band(text: &str) -> Option<EvictionBand> {
    let (low, high) = text.split_once('-')?;
    Some(EvictionBand { low_pct: low.trim().parse().ok()?, high_pct: high.trim().parse().ok()? })
}

/// The quota family of a VM size, in the spirit of Azure's family names:
/// `Standard_D4s_v5` → `DSv5`, `Standard_E4s_v5` → `ESv5`, `Standard_NC24ads_A100_v4` → `NCADSAv4`.
/// Quota is counted in vCPUs per family.
pub fn vm_family(size: &str) -> String {
    let rest = size.strip_prefix("Standard_").unwrap_or(size);
    let (body, version) = match rest.rsplit_once('_') {
        Some((body, v)) if v.starts_with('v') => (body, v),
        _ => (rest, ""),
    };
    let mut family = String::new();
    for part in body.split('_') {
        family.extend(part.chars().filter(|c| !c.is_ascii_digit()).map(|c| c.to_ascii_uppercase()));
    }
    family.push_str(version);
    family
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_table_has_the_reference_sizes() {
        let table = PriceTable::embedded();
        let d4 = table.get("standard_d4s_v5").unwrap();
        assert_eq!(d4.vcpus, 4);
        assert_eq!(d4.payg_usd_hour, 0.192);
        assert_eq!(d4.eviction_band.unwrap().mid_fraction(), 0.025);
        assert!(table.get("Standard_D8s_v5").is_some());
        assert!(table.get("Standard_E4s_v5").is_some());
        assert_eq!(table.get("Standard_D4s_v3").unwrap().eviction_band, None);
    }

    #[test]
    fn families() {
        let check = |size: &str, family: &str| assert_eq!(vm_family(size), family, "{size}");
        check("Standard_D4s_v5", "DSv5");
        check("Standard_D8s_v5", "DSv5");
        check("Standard_E4s_v5", "ESv5");
        check("Standard_NC24ads_A100_v4", "NCADSAv4");
        check("Standard_NC4as_T4_v3", "NCASTv3");
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let err = PriceTable::parse_csv("header\nStandard_X,1,2\n").unwrap_err();
        assert_eq!(err.to_string(), "price table line 2: expected at least 7 columns, found 3");
    }
}
