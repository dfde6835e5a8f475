//! Test data for copies that must arrive byte-identical: generated trees with names a
//! careless script would break, and tree snapshots to compare.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// splitmix64: the same data on every run, no extra crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

pub fn path_of(rel: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(rel))
}

pub fn put(dir: &Path, rel: &[u8], content: &[u8]) {
    let p = dir.join(path_of(rel));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, content).unwrap();
}

/// Names a careless script would break. The newline and backslash are escaped in the
/// manifest the way sha256sum does; the Latin-1 byte is how an old SCO box names files.
pub const SPECIAL: &[&[u8]] = &[
    b"with space.txt",
    b"  two leading spaces",
    b"trailing space ",
    "dir with space/ünïcödé-Blumen-🌷.dat".as_bytes(),
    "日本語/花.txt".as_bytes(),
    b"quote'single.txt",
    b"quote\"double.txt",
    b"-leading-dash.bin",
    b"--delete",
    b"sub/-rf",
    b"new\nline.txt",
    b"back\\slash.txt",
    b"tab\there.txt",
    b"star*glob?[x].txt",
    b"$HOME and $(id) `id`.txt",
    b"semicolon;ls.txt",
    b"colon:name.txt",
    b".hidden",
    b"latin1-caf\xe9.txt",
    b"deep/a/b/c/d/e/f/g/leaf",
    b"sub/MANIFEST.sha256",
];

/// Writes `n` generated files plus the special names under `dir`: nested directories,
/// random binary content, empty files, one 3 MiB file, a 0600 and a 0755 file.
pub fn generate(dir: &Path, n: usize, seed: u64) {
    let mut rng = Rng(seed);
    for i in 0..n {
        let rel = format!("d{}/s{}/f{i:04}.bin", i % 13, i % 5);
        let len = match i {
            7 => 3 << 20,
            _ if i % 50 == 0 => 0,
            _ => (rng.next() % 4096) as usize,
        };
        put(dir, rel.as_bytes(), &rng.bytes(len));
    }
    for (i, rel) in SPECIAL.iter().enumerate() {
        let len = if i % 4 == 0 {
            0
        } else {
            (rng.next() % 512) as usize
        };
        put(dir, rel, &rng.bytes(len));
    }
    let mode = |rel: &str, m| {
        std::fs::set_permissions(dir.join(rel), std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode("d1/s1/f0001.bin", 0o600);
    mode("d2/s2/f0002.bin", 0o755);
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir,
    File { mode: u32, content: Vec<u8> },
    Other,
}

/// Every entry below `dir` (but a top-level run/), by relative path (bytes).
pub fn snapshot(dir: &Path) -> BTreeMap<Vec<u8>, Entry> {
    fn walk(base: &Path, rel: &Path, out: &mut BTreeMap<Vec<u8>, Entry>) {
        for e in std::fs::read_dir(base.join(rel)).unwrap() {
            let e = e.unwrap();
            // run/ is a tmpfs on a real host (the runner's locks), not state to compare.
            if rel.as_os_str().is_empty() && e.file_name() == "run" {
                continue;
            }
            let r = rel.join(e.file_name());
            let md = e.path().symlink_metadata().unwrap();
            let key = r.as_os_str().as_bytes().to_vec();
            if md.is_dir() {
                out.insert(key, Entry::Dir);
                walk(base, &r, out);
            } else if md.is_file() {
                let content = std::fs::read(e.path()).unwrap();
                let mode = md.mode() & 0o7777;
                out.insert(key, Entry::File { mode, content });
            } else {
                out.insert(key, Entry::Other);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, Path::new(""), &mut out);
    out
}

/// Compares two snapshots entry by entry, naming the first differences (not dumping
/// megabytes).
pub fn assert_same(got: &BTreeMap<Vec<u8>, Entry>, want: &BTreeMap<Vec<u8>, Entry>, what: &str) {
    let mut diffs = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            None => diffs.push(format!("missing {:?}", text(k))),
            Some(x) if x != v => diffs.push(format!("differs {:?}", text(k))),
            _ => {}
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(*k)) {
        diffs.push(format!("extra {:?}", text(k)));
    }
    assert!(
        diffs.is_empty(),
        "{what}: {} entries differ, e.g. {:?}",
        diffs.len(),
        &diffs[..diffs.len().min(10)]
    );
}

/// Compares two trees file by file: names, content and modes.
pub fn assert_same_tree(got: &Path, want: &Path, what: &str) {
    assert_same(
        &snapshot(got),
        &snapshot(want),
        &format!("{what}: {} vs {}", got.display(), want.display()),
    );
}
