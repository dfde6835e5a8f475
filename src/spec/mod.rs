//! Validated user inputs: the shop code, the environment and the stack profile.
//! Everything here is checked before the first AWS call.

pub mod app;
pub mod backup;
pub mod kickstart;
mod profile;
pub mod vpn;

pub use app::{App, Apps};
pub use profile::{
    image_ref_ok, AmiSpec, CutoverConf, CutoverSpec, Media, PosSpec, Price, Rates, StackSpec,
};

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// A florist's shop code: exactly 8 ASCII digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShopCode(String);

impl ShopCode {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ShopCode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(ShopCode(s.to_string()))
        } else {
            Err(format!(
                "{s:?} is not a shop code: a shop code is exactly 8 digits, e.g. 12345678"
            ))
        }
    }
}

impl fmt::Display for ShopCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Env {
    Prod,
    Qa,
    Dev,
}

impl Env {
    pub fn as_str(self) -> &'static str {
        match self {
            Env::Prod => "prod",
            Env::Qa => "qa",
            Env::Dev => "dev",
        }
    }
}

impl FromStr for Env {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "prod" => Ok(Env::Prod),
            "qa" => Ok(Env::Qa),
            "dev" => Ok(Env::Dev),
            _ => Err(format!("unknown env {s:?}: use prod, qa or dev")),
        }
    }
}

impl fmt::Display for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One shop's stack in one environment: the unit that is provisioned, locked and torn down.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StackId {
    pub shop: ShopCode,
    pub env: Env,
}

impl StackId {
    /// Base of every name poscloud gives this stack's resources.
    pub fn name(&self) -> String {
        format!("poscloud-{}-{}", self.shop, self.env)
    }

    /// SSM parameter path prefix of this stack (ends with '/').
    pub fn param_path(&self) -> String {
        format!("/poscloud/{}/{}/", self.shop, self.env)
    }
}

impl fmt::Display for StackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shop {} ({})", self.shop, self.env)
    }
}

/// Server size offered by every stack profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Size {
    Small,
    Large,
}

/// AWS region names look like `eu-west-1` or `us-gov-west-1`, and name a region AWS has
/// (or one allowed by POSCLOUD_ALLOW_REGION): a mistyped region would otherwise only fail
/// when its endpoint's name does not resolve.
pub fn validate_region(region: &str) -> Result<()> {
    region_name(region)?;
    known_region(region)
}

/// Only the form of a region name: with --endpoint-url (an emulator, a VPC endpoint) the
/// region need not be one of AWS's.
pub fn region_name(region: &str) -> Result<()> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty())
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "{region:?} is not an AWS region name (like eu-west-1); check --region or AWS_REGION"
        )))
    }
}

/// The regions of every AWS partition (aws, aws-cn, aws-us-gov, aws-eusc, the iso ones), as
/// the SDK's partition table of this build lists them.
pub const REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "cn-north-1",
    "cn-northwest-1",
    "us-gov-east-1",
    "us-gov-west-1",
    "eusc-de-east-1",
    "eu-isoe-west-1",
    "us-iso-east-1",
    "us-iso-west-1",
    "us-isob-east-1",
    "us-isob-west-1",
    "us-isof-east-1",
    "us-isof-south-1",
];

fn known_region(region: &str) -> Result<()> {
    if REGIONS.contains(&region)
        || std::env::var("POSCLOUD_ALLOW_REGION").is_ok_and(|r| r == region)
    {
        return Ok(());
    }
    let guess = closest(region, REGIONS.iter().copied())
        .map(|r| format!(" (did you mean {r}?)"))
        .unwrap_or_default();
    Err(Error::usage(format!(
        "unknown region `{region}`{guess}: not one of AWS's regions"
    ))
    .next(format!(
        "check --region, AWS_REGION or the profile's `region`; for a region newer than this poscloud set POSCLOUD_ALLOW_REGION={region}"
    )))
}

/// The candidate nearest to a mistyped `word` (at most 2 edits away, a swap counting as
/// one), for "did you mean".
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edits(word, c), c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of
/// neighbours.
fn edits(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shop_codes() {
        assert!("12345678".parse::<ShopCode>().is_ok());
        for bad in [
            "1234567",
            "123456789",
            "1234567a",
            "12345678; rm -rf /",
            "",
            "１２３４５６７８",
        ] {
            assert!(bad.parse::<ShopCode>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn regions() {
        for good in ["eu-west-1", "us-east-1", "us-gov-west-1", "ap-southeast-2"] {
            validate_region(good).unwrap();
        }
        for bad in [
            "us-esat-1",
            "eu-west-9",
            "",
            "eu",
            "eu-west",
            "EU-WEST-1",
            "eu-west-x",
            "eu--1",
            "eu west 1",
        ] {
            assert!(validate_region(bad).is_err(), "{bad:?} accepted");
        }
        // The form alone is all --endpoint-url needs.
        region_name("us-esat-1").unwrap();
        let e = validate_region("us-esat-1").unwrap_err().to_string();
        assert!(
            e.starts_with("unknown region `us-esat-1` (did you mean us-east-1?)"),
            "{e}"
        );
        assert_eq!(closest("florsit", ["default", "florist"]), Some("florist"));
        assert_eq!(closest("prod", ["default", "florist"]), None);
    }
}
