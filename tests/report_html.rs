//! The reports' HTML pages rendered by a real browser: headless Chromium (Debian's
//! `chromium`, installed by scripts/setup.sh) loads the file, its DOM has the chart's bars
//! and labels with the hand-computed values and the compliance grid, and its screenshot is
//! a picture (the bars' and cells' colours in it), not a blank page.

mod common;

use common::Rig;
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs headless Chromium on `page` with a private profile; kills its process group if it
/// takes more than a minute. Returns its stdout.
fn chromium(page: &Path, args: &[&str]) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} missing: run scripts/setup.sh"
    );
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(CHROMIUM)
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start chromium");
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > Duration::from_secs(60) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Its helpers (zygote, crashpad) are in the group it leads: end them all, by its id.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    let status = status.unwrap_or_else(|| panic!("chromium {args:?} hung for a minute"));
    assert!(status.success(), "chromium {args:?}: {status}");
    reader.join().unwrap().unwrap()
}

/// The page's DOM as Chromium built it.
fn dom(page: &Path) -> String {
    chromium(page, &["--dump-dom"])
}

/// A screenshot of the page, decoded: (width, height, RGB pixels).
fn screenshot(page: &Path, dir: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let png = dir.join(format!(
        "{}.png",
        page.file_stem().unwrap().to_string_lossy()
    ));
    chromium(
        page,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,1400",
            "--hide-scrollbars",
        ],
    );
    let bytes = std::fs::read(&png).expect("the screenshot exists");
    assert!(
        bytes.len() > 10_000,
        "a near-empty screenshot: {} bytes",
        bytes.len()
    );
    decode_png(&bytes)
}

/// An 8-bit RGB or RGBA non-interlaced PNG (what Chromium writes) to RGB pixels.
fn decode_png(b: &[u8]) -> (u32, u32, Vec<[u8; 3]>) {
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut at, mut idat, mut head) = (8, Vec::new(), None);
    let be = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
    while at + 8 <= b.len() {
        let len = be(&b[at..]) as usize;
        let kind = &b[at + 4..at + 8];
        let data = &b[at + 8..at + 8 + len];
        match kind {
            b"IHDR" => head = Some((be(data), be(&data[4..]), data[8], data[9], data[12])),
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        at += 12 + len;
    }
    let (w, h, depth, colour, interlace) = head.expect("IHDR");
    assert_eq!((depth, interlace), (8, 0), "8-bit, not interlaced");
    let bpp = match colour {
        2 => 3,
        6 => 4,
        c => panic!("PNG colour type {c}"),
    };
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .unwrap();
    let stride = w as usize * bpp;
    let (mut prev, mut px) = (vec![0u8; stride], Vec::new());
    for row in raw.chunks(stride + 1).take(h as usize) {
        let (filter, mut cur) = (row[0], row[1..].to_vec());
        for i in 0..stride {
            let a = if i >= bpp { cur[i - bpp] as i16 } else { 0 };
            let (up, c) = (
                prev[i] as i16,
                if i >= bpp { prev[i - bpp] as i16 } else { 0 },
            );
            let pred = match filter {
                0 => 0,
                1 => a,
                2 => up,
                3 => (a + up) / 2,
                4 => {
                    let p = a + up - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - up).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        up
                    } else {
                        c
                    }
                }
                f => panic!("PNG filter {f}"),
            };
            cur[i] = cur[i].wrapping_add(pred as u8);
        }
        px.extend(cur.chunks(bpp).map(|p| [p[0], p[1], p[2]]));
        prev = cur;
    }
    assert_eq!(px.len(), (w * h) as usize, "every row decoded");
    (w, h, px)
}

/// How many pixels have the colour `#rrggbb` (within a small tolerance).
fn count(px: &[[u8; 3]], hex: &str) -> usize {
    let c = |i: usize| u8::from_str_radix(&hex[1 + 2 * i..3 + 2 * i], 16).unwrap();
    let want = [c(0), c(1), c(2)];
    px.iter()
        .filter(|p| (0..3).all(|i| p[i].abs_diff(want[i]) <= 3))
        .count()
}

/// Every `<tag …>` of the DOM: its attributes and the text up to its closing tag.
fn elements(dom: &str, tag: &str) -> Vec<(HashMap<String, String>, String)> {
    let mut out = Vec::new();
    let open = format!("<{tag}");
    let mut rest = dom;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        if !rest.starts_with([' ', '>']) {
            continue; // another tag with this prefix (<th> for <t>)
        }
        let end = rest.find('>').unwrap();
        let mut attrs = HashMap::new();
        let mut a = &rest[..end];
        while let Some(eq) = a.find("=\"") {
            let name = a[..eq].trim().to_string();
            let close = a[eq + 2..].find('"').unwrap();
            attrs.insert(name, a[eq + 2..eq + 2 + close].to_string());
            a = &a[eq + 3 + close..];
        }
        let body = &rest[end + 1..];
        let text = body[..body.find(&format!("</{tag}>")).unwrap_or(0)].to_string();
        out.push((attrs, text));
    }
    out
}

/// A page that needs nothing but itself: no script, no link, no fetched asset.
fn self_contained(html: &str) {
    for bad in [
        "<script", "<link", "src=", "href=", "url(", "@import", "<iframe",
    ] {
        assert!(!html.contains(bad), "{bad} in the page");
    }
    assert_eq!(
        html.matches("://").count(),
        html.matches("http://www.w3.org/2000/svg").count(),
        "only the SVG namespace names a URL: {html}"
    );
}

/// A resource name as hostile as an AWS tag can be: it must come out as text.
const EVIL: &str = "i-<b>\"x\"</b>&";

#[test]
fn billing_page_charts_each_env_month_over_month() {
    let rig = Rig::new();
    rig.journal_writes(&[
        // qa: August 24 h running, its disk all month; September 48 h running, its disk
        // until the 12th (264 h). t3.large 0.0832/h, 100 GB gp3 at 0.08/GB-month:
        // August 1.9968 + 8.00 = 10.00; September 3.9936 + 8 × 264/720 = 6.93.
        (
            "2026-08-01T00:00:00Z",
            "11111111/qa",
            "RunInstances",
            "i-q1",
        ),
        (
            "2026-08-02T00:00:00Z",
            "11111111/qa",
            "StopInstances",
            "i-q1",
        ),
        (
            "2026-09-10T00:00:00Z",
            "11111111/qa",
            "StartInstances",
            "i-q1",
        ),
        (
            "2026-09-12T00:00:00Z",
            "11111111/qa",
            "TerminateInstances",
            "i-q1",
        ),
        // prod: one day in October: 1.9968 + 8 × 24/744 = 2.25.
        (
            "2026-10-01T00:00:00Z",
            "44444444/prod",
            "RunInstances",
            "i-p1",
        ),
        (
            "2026-10-02T00:00:00Z",
            "44444444/prod",
            "TerminateInstances",
            "i-p1",
        ),
        // dev: a history that begins with a stop: it ran since before the journal began,
        // all of August (744 h: 61.90) and September (720 h: 59.90), and October until
        // the stop (10 h: 0.83). Its resource is named with markup; a note names it.
        (
            "2026-10-01T10:00:00Z",
            "22222222/dev",
            "StopInstances",
            EVIL,
        ),
    ]);
    let out = tempfile::tempdir().unwrap();
    let page = out.path().join("billing.html");
    let r = rig
        .run(&[
            "report",
            "billing",
            "--month",
            "2026-10",
            "--html",
            page.to_str().unwrap(),
        ])
        .ok();
    // The usual table still goes to stdout.
    assert!(r.stdout.contains("TOTAL"), "{r:?}");
    let html = std::fs::read_to_string(&page).expect("the page is written");
    self_contained(&html);
    assert!(!html.contains("<b>"), "markup from a resource name");
    assert!(
        html.contains("i-&lt;b&gt;&quot;x&quot;&lt;/b&gt;&amp;"),
        "{html}"
    );

    let dom = dom(&page);
    // One chart per env that ran, a bar per month the journal covers (August to October).
    let charts: Vec<String> = elements(&dom, "svg")
        .into_iter()
        .map(|(a, _)| a["data-env"].clone())
        .collect();
    assert_eq!(charts, ["prod", "qa", "dev"], "{dom}");
    let bars: Vec<(String, String, String)> = elements(&dom, "rect")
        .into_iter()
        .filter(|(a, _)| a.get("class").map(String::as_str) == Some("bar"))
        .map(|(a, _)| {
            (
                a["data-env"].clone(),
                a["data-month"].clone(),
                a["data-usd"].clone(),
            )
        })
        .collect();
    let want = [
        ("prod", "2026-08", "0.00"),
        ("prod", "2026-09", "0.00"),
        ("prod", "2026-10", "2.25"),
        ("qa", "2026-08", "10.00"),
        ("qa", "2026-09", "6.93"),
        ("qa", "2026-10", "0.00"),
        ("dev", "2026-08", "61.90"),
        ("dev", "2026-09", "59.90"),
        ("dev", "2026-10", "0.83"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(e, m, u)| (e.to_string(), m.to_string(), u.to_string()))
        .collect();
    assert_eq!(bars, want, "{dom}");
    // The tallest bar of each chart is full height; qa's September is 6.93/10.00 of it.
    let heights: HashMap<(String, String), f64> = elements(&dom, "rect")
        .into_iter()
        .filter(|(a, _)| a.contains_key("data-usd"))
        .map(|(a, _)| {
            (
                (a["data-env"].clone(), a["data-month"].clone()),
                a["height"].parse().unwrap(),
            )
        })
        .collect();
    let h = |e: &str, m: &str| heights[&(e.to_string(), m.to_string())];
    assert_eq!(h("qa", "2026-08"), 160.0);
    assert!((h("qa", "2026-09") - 160.0 * 6.9269 / 9.9968).abs() < 0.2);
    assert_eq!(h("qa", "2026-10"), 0.0);
    // Labels: each bar's value and month as text.
    let texts: Vec<(String, String)> = elements(&dom, "text")
        .into_iter()
        .map(|(a, t)| (a["class"].clone(), t))
        .collect();
    for (class, t) in [
        ("usd", "10.00"),
        ("usd", "6.93"),
        ("usd", "2.25"),
        ("month", "2026-08"),
        ("month", "2026-10"),
    ] {
        assert!(
            texts.contains(&(class.to_string(), t.to_string())),
            "{class} {t}: {texts:?}"
        );
    }
    // The month's bill with the subtotals and the total.
    assert!(
        !dom.contains("<td>subtotal</td><td>qa</td>"),
        "qa did not run in October"
    );
    assert!(
        dom.contains("<tr class=\"subtotal\"><td>subtotal</td><td>prod</td>"),
        "{dom}"
    );
    assert!(
        dom.contains("<tr class=\"total\"><td>total</td><td>all</td>"),
        "{dom}"
    );
    assert!(
        !dom.contains("<b>"),
        "the browser made an element of a name"
    );

    // The picture: the page drawn, the bars in their env's colour.
    let (w, h, px) = screenshot(&page, out.path());
    assert_eq!((w, h), (1280, 1400));
    let mut colours: Vec<[u8; 3]> = px.clone();
    colours.sort();
    colours.dedup();
    assert!(colours.len() > 10, "{} colours: a flat page", colours.len());
    // 50 px wide bars: prod 160 px tall, qa 160 + 111, dev 160.
    assert!(count(&px, "#c05621") > 50 * 150, "prod's bar");
    assert!(count(&px, "#2b6cb0") > 50 * 260, "qa's two bars");
    assert!(count(&px, "#2f855a") > 50 * 150, "dev's bar");
}

#[test]
fn compliance_page_shows_the_grid_and_each_fix() {
    let rig = Rig::new();
    // With alert e-mails, so that only the rule broken below fails.
    for (shop, env) in [("55555555", "prod"), ("66666666", "qa")] {
        let stack = rig.stack_with_alerts(env, "ops@example.com");
        let mut args = common::infra_args(shop, env);
        args.extend(["--stack", &stack]);
        rig.run(&args).ok();
    }
    let instance = rig.instance_id("55555555", "prod");
    rig.block(async {
        rig.ec2
            .modify_instance_metadata_options()
            .instance_id(&instance)
            .http_tokens(aws_sdk_ec2::types::HttpTokensState::Optional)
            .send()
            .await
            .unwrap();
    });
    let out = tempfile::tempdir().unwrap();
    let page = out.path().join("compliance.html");
    let r = rig.run(&["report", "compliance", "--html", page.to_str().unwrap()]);
    assert_eq!(r.code, 1, "a failing rule still exits 1: {r:?}");
    let html = std::fs::read_to_string(&page).expect("the page is written");
    self_contained(&html);

    let dom = dom(&page);
    let rows: Vec<String> = elements(&dom, "tr")
        .into_iter()
        .filter_map(|(_, t)| {
            t.strip_prefix("<th>")
                .and_then(|t| t.split_once("</th>"))
                .map(|(s, _)| s.to_string())
        })
        .collect();
    assert!(rows.contains(&"55555555/prod".to_string()), "{dom}");
    assert!(rows.contains(&"66666666/qa".to_string()), "{dom}");
    let cells: Vec<(String, String, String)> = elements(&dom, "td")
        .into_iter()
        .filter(|(a, _)| a.contains_key("data-rule"))
        .map(|(a, t)| (a["class"].clone(), a["data-rule"].clone(), t))
        .collect();
    assert_eq!(cells.len(), 20, "two stacks × ten rules: {cells:?}");
    let fails: Vec<_> = cells.iter().filter(|c| c.0 == "fail").collect();
    assert_eq!(fails.len(), 1, "{cells:?}");
    assert_eq!(
        (fails[0].1.as_str(), fails[0].2.as_str()),
        ("imdsv2", "FAIL")
    );
    assert!(cells.iter().any(|c| c.0 == "pass" && c.2 == "pass"));
    assert!(cells.iter().any(|c| c.0 == "na" && c.2 == "n/a"));
    // The failure with its fix.
    assert!(
        dom.contains(&format!(
            "poscloud provision --shop 55555555 --env prod --region {}",
            common::REGION
        )) && dom.contains("requires it again in place"),
        "{dom}"
    );

    let (_, _, px) = screenshot(&page, out.path());
    assert!(count(&px, "#c53030") > 500, "the FAIL cell in red");
    assert!(count(&px, "#c6f6d5") > 500 * 5, "pass cells in green");
}

#[test]
fn an_html_path_that_cannot_be_written_is_refused_before_any_aws_call() {
    let rig = Rig::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "billing".into(),
                "--html".into(),
                "/nonexistent/dir/b.html".into(),
            ],
            "cannot write there",
        ),
        (
            vec![
                "compliance".into(),
                "--html".into(),
                dir.path().display().to_string(),
            ],
            "is a directory",
        ),
        (
            vec![
                "compliance".into(),
                "--html".into(),
                file.join("c.html").display().to_string(),
            ],
            "cannot write there",
        ),
        (
            vec![
                "billing".into(),
                "--month".into(),
                "2026-13".into(),
                "--html".into(),
                dir.path().join("b.html").display().to_string(),
            ],
            "--month",
        ),
    ];
    for (args, expect) in &cases {
        rig.proxy.reset();
        let mut all = vec!["report"];
        all.extend(args.iter().map(String::as_str));
        let r = rig.run(&all);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.contains(expect), "{args:?}: {}", r.stderr);
        assert!(rig.proxy.calls().is_empty(), "{args:?}: an AWS call");
    }
    // Nothing left behind by the checks.
    let left: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(left, [file]);
}
