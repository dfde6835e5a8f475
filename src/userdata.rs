//! Renders the host's cloud-init document from `userdata/` and the stack profile.
//!
//! Template rules: `{{name}}` inside a line is replaced by a value; a line holding only
//! `{{name}}` (after indentation) is replaced by a multi-line value, each line indented
//! the same. `{{file:NAME}}` inserts `userdata/NAME` that way. Nothing secret may be
//! rendered: user-data is readable from instance metadata and DescribeInstanceAttribute.

use crate::error::{Error, Result};
use crate::spec::StackSpec;
use std::io::Write;

const TEMPLATE: &str = include_str!("../userdata/cloud-config.yaml");
/// Shell parts, kept as files so shellcheck can check them.
const FILES: &[(&str, &str)] = &[
    ("host-setup.sh", include_str!("../userdata/host-setup.sh")),
    ("firewall.sh", include_str!("../userdata/firewall.sh")),
];

/// AWS limit on user data before base64.
pub const MAX_BYTES: usize = 16 * 1024;

/// What RunInstances gets (before base64): the document, gzipped when it would not fit
/// (cloud-init recognises gzip by its magic bytes). Too large even then: an input error.
pub fn encode(spec: &StackSpec, region: &str) -> Result<Vec<u8>> {
    let text = render(spec, region);
    if text.len() <= MAX_BYTES {
        return Ok(text.into_bytes());
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(text.as_bytes())
        .and_then(|_| gz.finish())
        .map_err(|e| Error::failed(format!("gzip user-data: {e}")))
        .and_then(|bytes| {
            if bytes.len() <= MAX_BYTES {
                Ok(bytes)
            } else {
                Err(Error::usage(format!(
                    "{}: the host's user-data is {} bytes even gzipped, over the {MAX_BYTES}-byte AWS limit; list fewer operator_keys",
                    spec.source,
                    bytes.len()
                )))
            }
        })
}

pub fn render(spec: &StackSpec, region: &str) -> String {
    let admin: Vec<String> = spec.admin_cidrs.iter().map(|c| c.to_string()).collect();
    let vars: Vec<(&str, String)> = vec![
        ("shop", spec.id.shop.to_string()),
        ("env", spec.id.env.to_string()),
        ("hostname", spec.id.name()),
        ("region", region.to_string()),
        ("pos_ip", spec.pos_ip.to_string()),
        ("network", spec.network.to_string()),
        ("admin_cidrs", admin.join(" ")),
        ("operator_keys", spec.operator_keys.join("\n")),
    ];
    let lookup = |name: &str| -> String {
        if let Some(file) = name.strip_prefix("file:") {
            return FILES
                .iter()
                .find(|(n, _)| *n == file)
                .map(|(_, t)| t.to_string())
                .unwrap_or_else(|| panic!("userdata template names unknown file {file}"));
        }
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("userdata template names unknown value {name}"))
    };
    let mut out = String::with_capacity(TEMPLATE.len() * 2);
    for line in TEMPLATE.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if let Some(name) = trimmed
            .strip_prefix("{{")
            .and_then(|r| r.strip_suffix("}}"))
            .filter(|n| !n.contains("{{"))
        {
            for l in lookup(name).lines() {
                if l.is_empty() {
                    out.push('\n');
                } else {
                    out.push_str(indent);
                    out.push_str(l);
                    out.push('\n');
                }
            }
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            let Some(end) = rest[start..].find("}}") else {
                break;
            };
            out.push_str(&rest[..start]);
            out.push_str(&lookup(&rest[start + 2..start + end]));
            rest = &rest[start + end + 2..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    out
}
