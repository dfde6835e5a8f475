//! Validated user inputs: the shop code, the environment and the stack profile.
//! Everything here is checked before the first AWS call.

mod profile;
pub mod vpn;

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

/// AWS region names look like `eu-west-1` or `us-gov-west-1`.
pub fn validate_region(region: &str) -> Result<()> {
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
    }
}
