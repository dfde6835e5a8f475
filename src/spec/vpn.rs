//! A florist location's VPN, validated before anything changes: a name safe as a strongSwan
//! identifier, a public unicast peer, networks that overlap nothing, strong proposals unless
//! weak ones are asked for explicitly.

use crate::error::{Error, Result};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// IKEv2 with AES-256-GCM, a SHA-256 PRF and ECP-256 or Curve25519.
pub const DEFAULT_PROPOSALS: &str = "aes256gcm16-prfsha256-ecp256,aes256gcm16-prfsha256-x25519";
/// ESP with AES-256-GCM and PFS on ECP-256.
pub const DEFAULT_ESP_PROPOSALS: &str = "aes256gcm16-ecp256";

/// Algorithm names that make a proposal weak (what the old system forced, and worse).
const WEAK: &[&str] = &[
    "sha1", "md5", "modp768", "modp1024", "modp1536", "3des", "des", "blowfish", "null",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub name: String,
    pub peer_ip: Ipv4Addr,
    pub peer_nets: Vec<Ipv4Net>,
    pub ike_version: u8,
    pub proposals: String,
    pub esp_proposals: String,
}

/// A new pre-shared key: 32 bytes from the OS's random generator, base64 (44 characters).
/// It goes to SSM as a SecureString and nowhere else.
pub fn new_psk() -> Result<String> {
    use base64::Engine;
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::failed(format!("cannot read the OS random generator: {e}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Why a location is refused, for the error message.
fn bad(what: &str, reason: impl std::fmt::Display) -> Error {
    Error::usage(format!("{what}: {reason}"))
}

/// A name usable as a strongSwan connection name, a file name and an SSM path segment.
pub fn check_name(name: &str) -> Result<()> {
    let ok = (1..=31).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(bad(
            "--location",
            format!("{name:?}: 1-31 of a-z, 0-9 and '-', starting with a letter"),
        ))
    }
}

/// A peer on the internet: not private, shared, loopback, link-local, documentation,
/// multicast, reserved or broadcast space.
pub fn check_peer_ip(s: &str) -> Result<Ipv4Addr> {
    let ip: Ipv4Addr = s
        .parse()
        .map_err(|_| bad("--peer-ip", format!("{s:?} is not an IPv4 address")))?;
    let o = ip.octets();
    let shared = o[0] == 100 && (64..128).contains(&o[1]);
    let reserved = o[0] == 0 || o[0] >= 240;
    if ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_documentation()
        || ip.is_multicast()
        || ip.is_broadcast()
        || shared
        || reserved
    {
        return Err(bad(
            "--peer-ip",
            format!("{ip} is not a public unicast address (the florist router's internet address)"),
        ));
    }
    Ok(ip)
}

/// `A.B.C.D/N[,…]`: any prefix length, host bits zero.
pub fn parse_nets(s: &str) -> Result<Vec<Ipv4Net>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let net: Ipv4Net = part.parse().map_err(|_| {
            bad(
                "--peer-net",
                format!("{part:?} is not a network like 10.50.0.0/24"),
            )
        })?;
        if net.trunc() != net {
            return Err(bad(
                "--peer-net",
                format!("{net} has host bits set: did you mean {}?", net.trunc()),
            ));
        }
        out.push(net);
    }
    Ok(out)
}

fn overlap(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// A location as the operator gives it (command line or stack file), not yet checked.
#[derive(Debug, Clone, Default)]
pub struct LocationInput<'a> {
    pub name: &'a str,
    pub peer_ip: &'a str,
    pub peer_nets: &'a str,
    pub ike_version: u8,
    pub proposals: Option<&'a str>,
    pub esp_proposals: Option<&'a str>,
    pub allow_weak: bool,
}

impl Location {
    /// Validates a location against the POS network and the shop's other locations.
    pub fn new(i: &LocationInput, pos_network: &Ipv4Net, others: &[Location]) -> Result<Location> {
        let LocationInput {
            name,
            peer_ip,
            peer_nets,
            ike_version,
            proposals,
            esp_proposals,
            allow_weak,
        } = *i;
        check_name(name)?;
        let peer_ip = check_peer_ip(peer_ip)?;
        let nets = parse_nets(peer_nets)?;
        for (i, n) in nets.iter().enumerate() {
            if overlap(n, pos_network) {
                return Err(bad(
                    "--peer-net",
                    format!("{n} overlaps the POS network {pos_network}"),
                ));
            }
            if let Some(m) = nets[..i].iter().find(|m| overlap(n, m)) {
                return Err(bad("--peer-net", format!("{n} overlaps {m}")));
            }
            for o in others.iter().filter(|o| o.name != name) {
                if let Some(m) = o.peer_nets.iter().find(|m| overlap(n, m)) {
                    return Err(bad(
                        "--peer-net",
                        format!("{n} overlaps {m} of location {}", o.name),
                    ));
                }
            }
        }
        if !matches!(ike_version, 1 | 2) {
            return Err(bad(
                "--ike-version",
                format!("{ike_version}: use 2 (or 1 for legacy routers)"),
            ));
        }
        let proposals = check_proposals(
            "--proposal",
            proposals.unwrap_or(DEFAULT_PROPOSALS),
            allow_weak,
        )?;
        let esp_proposals = check_proposals(
            "--esp-proposal",
            esp_proposals.unwrap_or(DEFAULT_ESP_PROPOSALS),
            allow_weak,
        )?;
        Ok(Location {
            name: name.to_string(),
            peer_ip,
            peer_nets: nets,
            ike_version,
            proposals,
            esp_proposals,
        })
    }
}

/// The weak algorithms a proposal list names (the compliance report reads them too).
pub fn weak_algorithms(s: &str) -> Vec<&str> {
    s.split([',', '-']).filter(|a| WEAK.contains(a)).collect()
}

/// strongSwan proposal lists (`alg-alg-…[,…]`); weak algorithms only with `allow_weak`.
fn check_proposals(flag: &str, s: &str, allow_weak: bool) -> Result<String> {
    let shape_ok = !s.is_empty()
        && s.split(',').all(|p| {
            !p.is_empty()
                && p.split('-').all(|a| {
                    !a.is_empty()
                        && a.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                })
        });
    if !shape_ok {
        return Err(bad(
            flag,
            format!("{s:?} is not a strongSwan proposal list (like {DEFAULT_PROPOSALS})"),
        ));
    }
    let weak = weak_algorithms(s);
    if !weak.is_empty() && !allow_weak {
        return Err(bad(
            flag,
            format!(
                "{} is weak (broken or too short for card data); pass --allow-weak only for a router that can do nothing better",
                weak.join(", ")
            ),
        ));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos_net() -> Ipv4Net {
        "192.168.222.0/24".parse().unwrap()
    }

    fn input<'a>(name: &'a str, ip: &'a str, nets: &'a str) -> LocationInput<'a> {
        LocationInput {
            name,
            peer_ip: ip,
            peer_nets: nets,
            ike_version: 2,
            ..Default::default()
        }
    }

    fn loc(name: &str, ip: &str, nets: &str, others: &[Location]) -> Result<Location> {
        Location::new(&input(name, ip, nets), &pos_net(), others)
    }

    #[test]
    fn psks_are_32_random_bytes() {
        use base64::Engine;
        let (a, b) = (new_psk().unwrap(), new_psk().unwrap());
        assert_ne!(a, b);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&a)
            .unwrap();
        assert_eq!(raw.len(), 32);
        assert!(raw.iter().any(|x| *x != 0));
    }

    #[test]
    fn a_good_location_gets_strong_defaults() {
        let l = loc("main-store", "5.6.7.8", "10.50.0.0/24, 10.51.0.0/16", &[]).unwrap();
        assert_eq!(l.proposals, DEFAULT_PROPOSALS);
        assert_eq!(l.esp_proposals, DEFAULT_ESP_PROPOSALS);
        assert_eq!(l.peer_nets.len(), 2);
        // Any prefix length, not only /24.
        assert!(loc("x", "5.6.7.8", "172.20.4.0/22", &[]).is_ok());
    }

    #[test]
    fn bad_locations_are_refused_with_the_reason() {
        let main = loc("main", "5.6.7.8", "10.50.0.0/24", &[]).unwrap();
        let cases: &[(&str, &str, &str, &str)] = &[
            ("Main", "5.6.7.8", "10.60.0.0/24", "--location"),
            ("a b", "5.6.7.8", "10.60.0.0/24", "--location"),
            ("x;rm", "5.6.7.8", "10.60.0.0/24", "--location"),
            ("store-", "5.6.7.8", "10.60.0.0/24", "--location"),
            ("shop2", "10.1.2.3", "10.60.0.0/24", "public unicast"),
            ("shop2", "192.168.1.1", "10.60.0.0/24", "public unicast"),
            ("shop2", "100.64.0.9", "10.60.0.0/24", "public unicast"),
            ("shop2", "127.0.0.1", "10.60.0.0/24", "public unicast"),
            ("shop2", "224.0.0.5", "10.60.0.0/24", "public unicast"),
            ("shop2", "203.0.113.7", "10.60.0.0/24", "public unicast"),
            ("shop2", "5.6.7", "10.60.0.0/24", "not an IPv4"),
            ("shop2", "5.6.7.8", "10.60.0.1/24", "host bits"),
            ("shop2", "5.6.7.8", "10.60.0.0/33", "not a network"),
            (
                "shop2",
                "5.6.7.8",
                "192.168.0.0/16",
                "overlaps the POS network",
            ),
            (
                "shop2",
                "5.6.7.8",
                "192.168.222.128/25",
                "overlaps the POS network",
            ),
            (
                "shop2",
                "5.6.7.8",
                "10.60.0.0/24,10.60.0.0/23",
                "overlaps 10.60.0.0/24",
            ),
            ("shop2", "5.6.7.8", "10.50.0.128/25", "of location main"),
        ];
        for (name, ip, nets, want) in cases {
            let err = loc(name, ip, nets, std::slice::from_ref(&main)).unwrap_err();
            assert!(err.to_string().contains(want), "{name} {ip} {nets}: {err}");
        }
        // Updating a location may keep its own networks.
        assert!(loc(
            "main",
            "5.6.7.9",
            "10.50.0.0/24",
            std::slice::from_ref(&main)
        )
        .is_ok());
    }

    #[test]
    fn weak_or_malformed_proposals_need_a_flag_or_are_refused() {
        let n = pos_net();
        let legacy = LocationInput {
            ike_version: 1,
            proposals: Some("aes128-sha1-modp1024"),
            esp_proposals: Some("aes128-sha1"),
            ..input("old", "5.6.7.8", "10.9.0.0/24")
        };
        let err = Location::new(&legacy, &n, &[]).unwrap_err();
        assert!(err.to_string().contains("sha1, modp1024 is weak"), "{err}");
        let l = Location::new(
            &LocationInput {
                allow_weak: true,
                ..legacy
            },
            &n,
            &[],
        )
        .unwrap();
        assert_eq!(
            (l.ike_version, l.proposals.as_str()),
            (1, "aes128-sha1-modp1024")
        );
        for p in [
            "",
            "aes256 sha256",
            "aes256;reboot",
            "AES256-SHA256",
            "aes256--sha256",
        ] {
            let i = LocationInput {
                proposals: Some(p),
                allow_weak: true,
                ..input("x", "5.6.7.8", "10.9.0.0/24")
            };
            assert!(Location::new(&i, &n, &[]).is_err(), "{p:?}");
        }
        let v3 = LocationInput {
            ike_version: 3,
            ..input("x", "5.6.7.8", "10.9.0.0/24")
        };
        assert!(Location::new(&v3, &n, &[]).is_err());
    }
}
