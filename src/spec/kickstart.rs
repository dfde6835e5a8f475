//! The kickstart, read for container media: what build.sh needs from it, parsed here so the
//! host gets a ready list (repo sections, packages, yum options, %post bodies) as inputs.
//!
//! Read (media for a container, not a bootable system):
//! - `rootpw`: must be exactly `rootpw --lock` when present (any line starting with
//!   "rootpw"): shared media must never carry a root password.
//! - `repo`: `--name=N` and one of `--baseurl=URL` / `--mirrorlist=URL` (http, https, ftp,
//!   file), optional `--cost`, `--excludepkgs`, `--includepkgs`, `--proxy` (`--install` is
//!   accepted and ignored); others are refused. Each becomes a section of a private
//!   reposdir, with gpgcheck=1 and the build host's CentOS 7 key as gpgkey (so only
//!   repositories signed by CentOS 7's key can be used).
//! - `%packages`: names (globs allowed), `@group` / `@^environment` (no per-group options),
//!   `-name` (an exclusion). Options: `--excludedocs`, `--instLangs=`, `--ignoremissing`,
//!   `--multilib`; `--nobase`, `--nocore`, `--default`, `--retries`, `--timeout` are accepted
//!   and ignored. `@core` is not added implicitly. Without `--ignoremissing` a missing
//!   package fails the build (yum's CentOS 7 default would skip it).
//! - `%post`, in file order: `--nochroot` runs on the build host by `--interpreter` (default
//!   bash) with ANA_INSTALL_PATH=<rootfs>; without it, `chroot <rootfs> <interpreter,
//!   default /bin/sh>` with the body on stdin. `--erroronfail` is implied, `--log` ignored.
//! - Ignored (listed on one progress line): `%pre`, `%pre-install`, `%onerror`,
//!   `%traceback`, `%addon`, `%anaconda` sections and every other command (lang, timezone,
//!   bootloader, part, network, user, url, ...). `%include` and `%ksappend` are refused: the
//!   kickstart must be self-contained (its text is what the media key covers).
//!
//! Every section must end with `%end`.

/// The CentOS 7 signing key on the build host: the only key repositories may be signed by.
const GPG_KEY: &str = "file:///etc/pki/rpm-gpg/RPM-GPG-KEY-CentOS-7";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    /// `%post` (true) or `%post --nochroot` (false).
    pub chroot: bool,
    pub interpreter: String,
    /// The kickstart line of its `%post` header, for messages.
    pub line: usize,
    pub body: String,
}

/// What build.sh uses of a kickstart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kickstart {
    /// Repository names, in file order.
    pub repo_names: Vec<String>,
    /// The yum .repo text of every repository.
    pub repos: String,
    /// Package names, globs and @groups to install.
    pub packages: Vec<String>,
    /// yum options: those of the %packages header, then `--exclude=` per `-name`.
    pub yum_opts: Vec<String>,
    pub posts: Vec<Post>,
    /// Commands and sections container media do not use, each once.
    pub ignored: Vec<String>,
}

impl Kickstart {
    /// The build.sh inputs that carry the kickstart (each a plain value, no NUL).
    pub fn inputs(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("REPO_NAMES".to_string(), self.repo_names.join(" ")),
            ("REPOS".to_string(), self.repos.clone()),
            ("PACKAGES".to_string(), self.packages.join("\n")),
            ("YUM_OPTS".to_string(), self.yum_opts.join("\n")),
            ("IGNORED".to_string(), self.ignored.join(" ")),
            ("POSTS".to_string(), self.posts.len().to_string()),
        ];
        for (i, p) in self.posts.iter().enumerate() {
            let n = i + 1;
            v.push((format!("POST_{n}"), p.body.clone()));
            v.push((
                format!("POST_{n}_CHROOT"),
                if p.chroot { "1" } else { "0" }.into(),
            ));
            v.push((format!("POST_{n}_INTERP"), p.interpreter.clone()));
            v.push((format!("POST_{n}_LINE"), p.line.to_string()));
        }
        v
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Words as bash's `read -a` splits them (default IFS).
fn words(s: &str) -> Vec<&str> {
    s.split([' ', '\t', '\n'])
        .filter(|w| !w.is_empty())
        .collect()
}

/// One pair of surrounding quotes off an option value.
fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

fn all(s: &str, ok: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.chars().all(ok)
}

fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

fn url_ok(u: &str) -> bool {
    ["http://", "https://", "ftp://", "file://"]
        .iter()
        .find_map(|p| u.strip_prefix(p))
        .is_some_and(|rest| {
            all(rest, |c| {
                !c.is_whitespace() && !c.is_control() && c != '"' && c != '\''
            })
        })
}

fn pkg_ok(p: &str) -> bool {
    p.starts_with(|c: char| alnum(c) || "_.+*?:".contains(c))
        && all(p, |c| alnum(c) || "_.+*?:-".contains(c))
}

fn group_ok(g: &str) -> bool {
    let rest = g.strip_prefix('@').unwrap_or("");
    let rest = rest.strip_prefix('^').unwrap_or(rest);
    g.starts_with('@')
        && rest.starts_with(alnum)
        && all(rest, |c| alnum(c) || " ._+()-".contains(c))
}

fn name_ok(n: &str) -> bool {
    n.len() <= 64 && n.starts_with(alnum) && all(n, |c| alnum(c) || "._-".contains(c))
}

fn pkg_list_ok(s: &str) -> bool {
    all(s, |c| alnum(c) || "_.+*?,:-".contains(c))
}

#[derive(PartialEq)]
enum Section {
    None,
    Packages,
    Post,
    Ignore,
}

struct Parser {
    ks: Kickstart,
    line: usize,
    /// `--exclude=` options, given to yum after the header's.
    excludes: Vec<String>,
}

impl Parser {
    fn err(&self, what: impl std::fmt::Display) -> String {
        format!("kickstart line {}: {what}", self.line)
    }

    fn ignore(&mut self, what: &str) {
        if !self.ks.ignored.iter().any(|i| i == what) {
            self.ks.ignored.push(what.to_string());
        }
    }

    /// Option words after the command: (option, value). `--opt=value`, or `--opt value`
    /// when `takes_next(opt)` and the next word is there (and, for repo, not an option).
    fn options<'a>(
        &self,
        w: &[&'a str],
        takes_next: impl Fn(&str, Option<&&str>) -> bool,
    ) -> Vec<(&'a str, &'a str)> {
        let mut out = Vec::new();
        let mut i = 1;
        while i < w.len() {
            let (mut opt, mut val) = (w[i], "");
            if let Some((o, v)) = w[i].split_once('=').filter(|_| w[i].starts_with("--")) {
                (opt, val) = (o, v);
            } else if takes_next(opt, w.get(i + 1)) {
                i += 1;
                val = w[i];
            }
            out.push((opt, unquote(val)));
            i += 1;
        }
        out
    }

    fn repo(&mut self, t: &str) -> Result<(), String> {
        let w = words(t);
        let (mut name, mut baseurl, mut mirrorlist) = ("", "", "");
        let (mut cost, mut excl, mut incl, mut proxy) = ("", "", "", "");
        for (opt, val) in self.options(&w, |_, next| next.is_some_and(|n| !n.starts_with("--"))) {
            match opt {
                "--name" => name = val,
                "--baseurl" => baseurl = val,
                "--mirrorlist" => mirrorlist = val,
                "--cost" => cost = val,
                "--excludepkgs" => excl = val,
                "--includepkgs" => incl = val,
                "--proxy" => proxy = val,
                // Anaconda: also add the repo to the installed system; not for media.
                "--install" => {}
                _ => return Err(self.err(format!("repo option '{opt}' is not supported (--name, --baseurl, --mirrorlist, --cost, --excludepkgs, --includepkgs, --proxy)"))),
            }
        }
        if !name_ok(name) {
            return Err(self.err("repo needs --name=NAME (letters, digits, . _ -)"));
        }
        if self.ks.repo_names.iter().any(|n| n == name) {
            return Err(self.err(format!("repo '{name}' is defined twice")));
        }
        if baseurl.is_empty() == mirrorlist.is_empty() {
            return Err(self.err(format!(
                "repo '{name}' needs one of --baseurl and --mirrorlist"
            )));
        }
        let bad = |what: &str| self.err(format!("repo '{name}': {what}"));
        let mut conf = format!("[{name}]\nname={name} (kickstart)\n");
        if !baseurl.is_empty() {
            if !url_ok(baseurl) {
                return Err(bad("--baseurl must be an http(s), ftp or file URL"));
            }
            conf += &format!("baseurl={baseurl}\n");
        } else {
            if !url_ok(mirrorlist) {
                return Err(bad("--mirrorlist must be an http(s), ftp or file URL"));
            }
            conf += &format!("mirrorlist={mirrorlist}\n");
        }
        if !cost.is_empty() {
            if cost.len() > 6 || !all(cost, |c| c.is_ascii_digit()) {
                return Err(bad("--cost must be a number"));
            }
            conf += &format!("cost={cost}\n");
        }
        for (key, val, opt) in [
            ("exclude", excl, "--excludepkgs"),
            ("includepkgs", incl, "--includepkgs"),
        ] {
            if !val.is_empty() {
                if !pkg_list_ok(val) {
                    return Err(bad(&format!("bad {opt}")));
                }
                conf += &format!("{key}={val}\n");
            }
        }
        if !proxy.is_empty() {
            if !url_ok(proxy) {
                return Err(bad("--proxy must be a URL"));
            }
            conf += &format!("proxy={proxy}\n");
        }
        conf += &format!("enabled=1\nskip_if_unavailable=0\ngpgcheck=1\ngpgkey={GPG_KEY}\n");
        self.ks.repo_names.push(name.to_string());
        self.ks.repos += &conf;
        Ok(())
    }

    fn packages_header(&mut self, t: &str) -> Result<(), String> {
        let w = words(t);
        let (mut tsflags, mut ignoremissing) = ("nocontexts".to_string(), false);
        for word in &w[1..] {
            let (opt, val) = match word.split_once('=') {
                Some((o, v)) => (o, unquote(v)),
                None => (*word, ""),
            };
            match opt {
                "--excludedocs" => tsflags += ",nodocs",
                "--instLangs" | "--inst-langs" => {
                    if !val.chars().all(|c| alnum(c) || "_.@:".contains(c)) {
                        return Err(self.err("bad --instLangs"));
                    }
                    self.ks
                        .yum_opts
                        .push(format!("--setopt=override_install_langs={val}"));
                }
                "--ignoremissing" => ignoremissing = true,
                "--multilib" => self.ks.yum_opts.push("--setopt=multilib_policy=all".into()),
                "--nobase" | "--nocore" | "--default" | "--retries" | "--timeout" => {}
                _ => return Err(self.err(format!("%packages option '{word}' is not supported"))),
            }
        }
        self.ks.yum_opts.push(format!("--setopt=tsflags={tsflags}"));
        self.ks.yum_opts.push(format!(
            "--setopt=skip_missing_names_on_install={}",
            if ignoremissing { "True" } else { "False" }
        ));
        Ok(())
    }

    fn post_header(&mut self, t: &str) -> Result<(), String> {
        let w = words(t);
        let (mut chroot, mut interp) = (true, String::new());
        let takes_next =
            |o: &str, n: Option<&&str>| n.is_some() && matches!(o, "--interpreter" | "--log");
        for (opt, val) in self.options(&w, takes_next) {
            match opt {
                "--nochroot" => chroot = false,
                "--interpreter" => {
                    let ok = val.starts_with('/')
                        && val.len() > 1
                        && val.chars().all(|c| alnum(c) || "._/+-".contains(c));
                    if !ok {
                        return Err(self.err("--interpreter must be an absolute path"));
                    }
                    interp = val.to_string();
                }
                "--erroronfail" | "--log" | "--logfile" => {}
                _ => return Err(self.err(format!("%post option '{opt}' is not supported (--nochroot, --interpreter, --erroronfail, --log)"))),
            }
        }
        if interp.is_empty() {
            interp = if chroot { "/bin/sh" } else { "bash" }.into();
        }
        self.ks.posts.push(Post {
            chroot,
            interpreter: interp,
            line: self.line,
            body: String::new(),
        });
        Ok(())
    }

    fn package_line(&mut self, t: &str) -> Result<(), String> {
        if t.starts_with('@') {
            if t.contains(" --") {
                return Err(self.err("options on group lines are not supported"));
            }
            if !group_ok(t) {
                return Err(self.err(format!("bad group '{t}'")));
            }
            self.ks.packages.push(t.to_string());
        } else if let Some(name) = t.strip_prefix('-') {
            if !pkg_ok(name) {
                return Err(self.err(format!("bad exclusion '{t}'")));
            }
            self.excludes.push(format!("--exclude={name}"));
        } else {
            if !pkg_ok(t) {
                return Err(self.err(format!("bad package name '{t}' (one per line)")));
            }
            self.ks.packages.push(t.to_string());
        }
        Ok(())
    }
}

/// Reads a kickstart; the error names the line and what is wrong with it (never a line's
/// text where it may hold a password).
pub fn parse(text: &str) -> Result<Kickstart, String> {
    let mut p = Parser {
        ks: Kickstart::default(),
        line: 0,
        excludes: Vec::new(),
    };
    let (mut section, mut seen_packages) = (Section::None, false);
    for raw in text.split('\n') {
        p.line += 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let t = line.trim_matches(is_space);
        if t.starts_with("rootpw") && words(t) != ["rootpw", "--lock"] {
            return Err(format!(
                "kickstart line {} sets a root password: media are shared, use 'rootpw --lock'",
                p.line
            ));
        }
        if section != Section::None && t == "%end" {
            section = Section::None;
            continue;
        }
        match section {
            Section::Post => {
                let post = p.ks.posts.last_mut().expect("a %post header came first");
                post.body += line;
                post.body.push('\n');
                continue;
            }
            Section::Ignore => continue,
            Section::Packages => {
                if !(t.is_empty() || t.starts_with('#')) {
                    p.package_line(t)?;
                }
                continue;
            }
            Section::None => {}
        }
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let first = words(t)[0];
        match first {
            "%packages" => {
                if seen_packages {
                    return Err(p.err("a second %packages section"));
                }
                seen_packages = true;
                p.packages_header(t)?;
                section = Section::Packages;
            }
            "%post" => {
                p.post_header(t)?;
                section = Section::Post;
            }
            "%pre" | "%pre-install" | "%onerror" | "%traceback" | "%addon" | "%anaconda" => {
                p.ignore(first);
                section = Section::Ignore;
            }
            "%include" | "%ksappend" => {
                return Err(p.err(format!(
                    "{first} is not supported: the kickstart must be self-contained"
                )))
            }
            _ if first.starts_with('%') => return Err(p.err(format!("unknown section '{first}'"))),
            "repo" => p.repo(t)?,
            "rootpw" => {} // checked above
            _ => {
                let ok = first.starts_with(|c: char| c.is_ascii_alphabetic())
                    && all(first, |c| alnum(c) || "_-".contains(c));
                if !ok {
                    return Err(p.err(format!("'{first}' is not a kickstart command")));
                }
                p.ignore(first);
            }
        }
    }
    let open = match section {
        Section::None => None,
        Section::Packages => Some("%packages"),
        Section::Post => Some("%post"),
        Section::Ignore => Some("ignored"),
    };
    if let Some(s) = open {
        return Err(format!(
            "the kickstart's last {s} section does not end with %end"
        ));
    }
    if !p.ks.packages.is_empty() && p.ks.repo_names.is_empty() {
        return Err("the kickstart lists packages but has no 'repo' line (the 'url' command is not used for media)".into());
    }
    p.ks.yum_opts.append(&mut p.excludes);
    Ok(p.ks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(ks: &str) -> String {
        parse(ks).unwrap_err()
    }

    #[test]
    fn the_shipped_kickstarts_parse() {
        for ks in [
            include_str!("../../bootstrap/kickstart/rti.ks"),
            include_str!("../../bootstrap/kickstart/daisy.ks"),
        ] {
            let k = parse(ks).unwrap();
            assert_eq!(k.repo_names, ["base", "updates"]);
            assert!(k.packages.iter().any(|p| p == "bash"), "{k:?}");
            assert!(k.yum_opts.iter().any(|o| o == "--exclude=kernel"), "{k:?}");
            assert!(k
                .repos
                .contains("gpgcheck=1\ngpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-CentOS-7\n"));
        }
    }

    #[test]
    fn repos_packages_and_posts_become_ready_lists() {
        let k = parse(concat!(
            "rootpw --lock\r\n",
            "lang en_US\ntimezone UTC\nlang de_DE\n",
            "repo --name=base --baseurl=\"https://m.example/os/\" --cost 5 --excludepkgs=a*,b\n",
            "repo --name=extra --mirrorlist=http://m.example/list --install\n",
            "%packages --excludedocs --instLangs=en_US --ignoremissing --nocore\n",
            "  bash\n# comment\n\n@^minimal-environment\n@Base Tools\n-kernel\nvim*\n",
            "%end\n",
            "%pre\nrm -rf /\n%end\n",
            "%post --nochroot --interpreter /usr/bin/python --log=/x\n",
            "  print(1)\n\n%end\n",
            "%post\necho hi\n%end\n",
        ))
        .unwrap();
        assert_eq!(k.repo_names, ["base", "extra"]);
        assert_eq!(
            k.repos,
            "[base]\nname=base (kickstart)\nbaseurl=https://m.example/os/\ncost=5\nexclude=a*,b\n\
             enabled=1\nskip_if_unavailable=0\ngpgcheck=1\ngpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-CentOS-7\n\
             [extra]\nname=extra (kickstart)\nmirrorlist=http://m.example/list\n\
             enabled=1\nskip_if_unavailable=0\ngpgcheck=1\ngpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-CentOS-7\n"
        );
        assert_eq!(
            k.packages,
            ["bash", "@^minimal-environment", "@Base Tools", "vim*"]
        );
        assert_eq!(
            k.yum_opts,
            [
                "--setopt=override_install_langs=en_US",
                "--setopt=tsflags=nocontexts,nodocs",
                "--setopt=skip_missing_names_on_install=True",
                "--exclude=kernel"
            ]
        );
        assert_eq!(
            k.posts,
            [
                Post {
                    chroot: false,
                    interpreter: "/usr/bin/python".into(),
                    line: 19,
                    body: "  print(1)\n\n".into()
                },
                Post {
                    chroot: true,
                    interpreter: "/bin/sh".into(),
                    line: 23,
                    body: "echo hi\n".into()
                }
            ]
        );
        assert_eq!(k.ignored, ["lang", "timezone", "%pre"]);
        let inputs = k.inputs();
        let get = |n: &str| &inputs.iter().find(|(k, _)| k == n).unwrap().1;
        assert_eq!(get("POSTS"), "2");
        assert_eq!(get("POST_1_CHROOT"), "0");
        assert_eq!(get("POST_2"), "echo hi\n");
        assert_eq!(
            get("PACKAGES"),
            "bash\n@^minimal-environment\n@Base Tools\nvim*"
        );
        assert_eq!(get("REPO_NAMES"), "base extra");
        // A kickstart without packages needs no repo and gives yum nothing to install.
        let k = parse("%post --nochroot\ntrue\n%end").unwrap();
        assert_eq!(
            (k.packages.len(), k.posts[0].interpreter.as_str()),
            (0, "bash")
        );
    }

    #[test]
    fn what_media_cannot_use_is_refused_with_its_line() {
        let repo = "repo --name=base --baseurl=https://m.example/\n";
        for (ks, want) in [
            ("rootpw secret\n", "kickstart line 1 sets a root password"),
            ("rootpw --lock x\n", "kickstart line 1 sets a root password"),
            (
                "repo --name=a --baseurl=https://x/ --gpgkey=y\n",
                "line 1: repo option '--gpgkey' is not supported",
            ),
            (
                "repo --baseurl=https://x/\n",
                "line 1: repo needs --name=NAME",
            ),
            (
                "repo --name=a\n",
                "repo 'a' needs one of --baseurl and --mirrorlist",
            ),
            (
                "repo --name=a --baseurl=https://x/ --mirrorlist=https://y/\n",
                "needs one of",
            ),
            (
                "repo --name=a --baseurl=gopher://x/\n",
                "--baseurl must be an http(s), ftp or file URL",
            ),
            (
                "repo --name=a --baseurl=https://x/\nrepo --name=a --baseurl=https://y/\n",
                "line 2: repo 'a' is defined twice",
            ),
            (
                "repo --name=a --baseurl=https://x/ --cost=x\n",
                "--cost must be a number",
            ),
            (
                "repo --name=a --baseurl=https://x/ --excludepkgs=a;b\n",
                "bad --excludepkgs",
            ),
            (
                "repo --name=a --baseurl=https://x/ --proxy=nope\n",
                "--proxy must be a URL",
            ),
            (
                "%packages --nope\n%end\n",
                "line 1: %packages option '--nope' is not supported",
            ),
            ("%packages --instLangs=a;b\n%end\n", "bad --instLangs"),
            (
                "%packages\n%end\n%packages\n%end\n",
                "line 3: a second %packages section",
            ),
            (
                "%packages\n@core --optional\n%end\n",
                "line 2: options on group lines are not supported",
            ),
            ("%packages\n@bad;group\n%end\n", "bad group '@bad;group'"),
            ("%packages\n-;x\n%end\n", "bad exclusion '-;x'"),
            (
                "%packages\nbash zsh\n%end\n",
                "line 2: bad package name 'bash zsh' (one per line)",
            ),
            (
                "%post --interpreter=sh\n%end\n",
                "--interpreter must be an absolute path",
            ),
            (
                "%post --nope\n%end\n",
                "%post option '--nope' is not supported",
            ),
            (
                "%include /x.ks\n",
                "%include is not supported: the kickstart must be self-contained",
            ),
            ("%weird\n", "unknown section '%weird'"),
            ("1abc\n", "'1abc' is not a kickstart command"),
            (
                "%post\necho\n",
                "the kickstart's last %post section does not end with %end",
            ),
            (
                "%packages\nbash\n%end\n",
                "lists packages but has no 'repo' line",
            ),
        ] {
            let e = err(ks);
            assert!(e.contains(want), "{ks:?}: {e}");
        }
        // A password is never quoted back.
        assert!(!err("rootpw hunter2\n").contains("hunter2"));
        assert!(parse(&format!("{repo}%packages\nbash\n%end\n")).is_ok());
    }
}
