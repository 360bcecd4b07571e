//! Reading what Debian's strace wrote (`-f -y -x`, in the PID namespace of the processes it
//! traces) about a program run in bubblewrap: which paths the sandboxed processes looked up,
//! which directories they listed, what they executed, and whatever makes the run impossible
//! to reuse (a network socket, random bytes, a changed mount view, a path relative to a
//! descriptor nobody decoded).
//!
//! Only processes inside the sandbox count: those that executed a program after bubblewrap
//! set the sandbox up, and their descendants. bubblewrap's own setup is host work.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What a traced run read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reads {
    /// Absolute paths looked up (opened, stat'ed, tested, executed, created, removed).
    pub lookups: BTreeSet<String>,
    /// Absolute paths of directories listed.
    pub listings: BTreeSet<String>,
    /// Absolute paths executed.
    pub execs: BTreeSet<String>,
    /// Why the run cannot be reused, if it cannot (the first reason seen).
    pub untraceable: Option<String>,
    /// For lookups under `/dev` and `/proc`: the program that made the first of them, to
    /// name it when that makes the run not reusable.
    pub who: BTreeMap<String, String>,
    /// Lines read from the sandboxed processes.
    pub lines: usize,
}

impl Reads {
    fn refuse(&mut self, why: String) {
        if self.untraceable.is_none() {
            self.untraceable = Some(why);
        }
    }

    /// Adds another run's reads (the scripts of one node, in order).
    pub fn extend(&mut self, other: Reads) {
        self.lookups.extend(other.lookups);
        self.listings.extend(other.listings);
        self.execs.extend(other.execs);
        for (k, v) in other.who {
            self.who.entry(k).or_insert(v);
        }
        self.lines += other.lines;
        if let Some(w) = other.untraceable {
            self.refuse(w);
        }
    }
}

/// The strace options this parser reads; the syscall classes are what a lookup can be, plus
/// the calls that create processes (the parser follows them), that change namespaces
/// (`unshare` and `setns` are in no class), the network and randomness. Waits and exits are
/// not traced: every traced call stops the process (~60 µs here), and the example's initramfs
/// makes 1,350 of them.
pub const STRACE_ARGS: &[&str] = &[
    "-f",
    "-qq",
    "--seccomp-bpf",
    "-y",
    "-x",
    "-e",
    "signal=none",
    "-e",
    "trace=%file,clone,clone3,fork,vfork,execve,execveat,unshare,setns,%network,getdents,getdents64,fchdir,getrandom",
];

/// System calls after which the sandbox's paths no longer mean what the tree says.
const VIEW_CHANGES: &[&str] = &[
    "mount",
    "umount2",
    "pivot_root",
    "unshare",
    "setns",
    "move_mount",
    "fsmount",
    "open_tree",
];

/// strace's `%network` class but `socket` (judged on its own): their string arguments are
/// addresses, not paths, except a unix socket's `sun_path`.
const NETWORK_CALLS: &[&str] = &[
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "listen",
    "recvfrom",
    "recvmmsg",
    "recvmsg",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shutdown",
    "socketpair",
];

/// `/dev` entries whose content is no input: sinks, sources of zeros, the terminal, and the
/// process's own descriptors.
const QUIET_DEVICES: &[&str] = &[
    "dev", "null", "zero", "full", "tty", "fd", "stdin", "stdout", "stderr", "pts", "ptmx", "shm",
];

#[derive(Default, Clone)]
struct Proc {
    inside: bool,
    cwd: String,
    /// Where `chroot` put the process's `/` (a sandbox path; empty: the sandbox's own).
    root: String,
    /// The program it executed last.
    exe: String,
}

/// Parses a trace file's text. `root_pid` lines come first in the file (bubblewrap itself).
/// The sandbox has a network namespace of its own (nothing but a loopback interface that is
/// down), so a socket reaches nothing outside it.
pub fn parse(text: &str) -> Reads {
    parse_with(text, "/", false)
}

/// [`parse`] of a program that bubblewrap started in directory `cwd`, with the host's network
/// when `host_network` (then a network socket is an input nobody can trace).
pub fn parse_with(text: &str, cwd: &str, host_network: bool) -> Reads {
    let mut reads = Reads::default();
    // Pass 1: the process tree (children name their parent through clone's return value).
    let mut parent: HashMap<u32, u32> = HashMap::new();
    let mut first_pid = None;
    for line in text.lines() {
        let Some((pid, rest)) = split_pid(line) else {
            continue;
        };
        first_pid.get_or_insert(pid);
        if let Some(child) = clone_child(rest) {
            parent.insert(child, pid);
        }
    }
    let Some(bwrap) = first_pid else {
        reads.refuse("the tracer recorded nothing".into());
        return reads;
    };
    // Pass 2: the sandboxed processes' system calls, in order.
    let mut procs: HashMap<u32, Proc> = HashMap::new();
    for line in text.lines() {
        let Some((pid, rest)) = split_pid(line) else {
            if !line.trim().is_empty() {
                reads.refuse(format!("a trace line nosa cannot read: {line}"));
            }
            continue;
        };
        if !procs.contains_key(&pid) {
            let inherited = parent
                .get(&pid)
                .and_then(|p| procs.get(p))
                .cloned()
                .unwrap_or(Proc {
                    inside: false,
                    cwd: cwd.into(),
                    root: String::new(),
                    exe: String::new(),
                });
            procs.insert(pid, inherited);
        }
        if let Some(after) = rest.strip_prefix("<... getrandom resumed>") {
            // getrandom prints its arguments when it returns.
            if procs.get(&pid).is_some_and(|p| p.inside) {
                let proc = procs.get_mut(&pid).expect("present");
                syscall("getrandom", after, proc, host_network, &mut reads);
            }
            continue;
        }
        if rest.starts_with("<...") || rest.starts_with("---") || rest.starts_with("+++") {
            continue;
        }
        let Some(open) = rest.find('(') else {
            reads.refuse(format!("a trace line nosa cannot read: {line}"));
            continue;
        };
        let name = &rest[..open];
        let args = &rest[open + 1..];
        let proc = procs.get_mut(&pid).expect("inserted above");
        if !proc.inside {
            // bubblewrap's setup until the sandboxed program starts.
            if pid != bwrap && (name == "execve" || name == "execveat") {
                proc.inside = true;
            } else {
                continue;
            }
        }
        reads.lines += 1;
        syscall(name, args, proc, host_network, &mut reads);
    }
    reads
}

/// `PID  rest`.
fn split_pid(line: &str) -> Option<(u32, &str)> {
    let (pid, rest) = line.split_once(char::is_whitespace)?;
    Some((pid.parse().ok()?, rest.trim_start()))
}

/// The child's pid, from a clone/fork line's return value (strace runs in the traced
/// processes' PID namespace, so that is the pid its lines carry).
fn clone_child(rest: &str) -> Option<u32> {
    let forkish = ["clone(", "clone3(", "fork(", "vfork("]
        .iter()
        .any(|p| rest.starts_with(p))
        || ["clone resumed>", "clone3 resumed>", "fork resumed>"]
            .iter()
            .any(|p| rest.contains(p));
    if !forkish {
        return None;
    }
    let tail = rest.rsplit_once("= ")?.1;
    tail.split_whitespace().next()?.parse().ok()
}

/// One argument token of interest: a descriptor with its decoded path, or a string.
enum Tok {
    Fd(Option<String>),
    Str(String),
}

/// System calls that look at a path without opening what it names: a lookup of
/// `/proc/<pid>/root` by one of these (systemctl's chroot test compares its inode with `/`'s)
/// reads nothing through it.
const STAT_FAMILY: &[&str] = &[
    "stat",
    "lstat",
    "newfstatat",
    "fstatat64",
    "statx",
    "access",
    "faccessat",
    "faccessat2",
    "readlink",
    "readlinkat",
];

/// Whether `p` is a process's `/proc/<pid>/root` or `cwd` link itself.
fn is_proc_root_link(p: &str) -> bool {
    let parts: Vec<&str> = p.split('/').filter(|c| !c.is_empty()).collect();
    matches!(parts.as_slice(), ["proc", _, "root" | "cwd"])
}

fn syscall(name: &str, args: &str, proc: &mut Proc, host_network: bool, reads: &mut Reads) {
    if VIEW_CHANGES.contains(&name) {
        reads.refuse(format!("it called {name}, which changes what paths mean"));
        return;
    }
    if name == "getrandom" {
        if args.contains("<unfinished ...>") {
            return; // decided when it resumes
        }
        // Bytes a program asks for without wanting entropy are no input: glibc's malloc key
        // and probes (a few bytes, GRND_NONBLOCK), and systemd's hash table seeds (16 bytes,
        // GRND_INSECURE, in every systemctl and udevadm that dracut and presets run). Any
        // other read of randomness is.
        if !is_not_entropy(args) {
            let call: String = args.chars().take(60).collect();
            reads.refuse(format!("it read random bytes (getrandom({call}))"));
        }
        return;
    }
    if name == "socket" {
        if host_network && !(args.starts_with("AF_UNIX") || args.starts_with("AF_NETLINK")) {
            reads.refuse(format!(
                "it opened a network socket ({})",
                args.split(',').next().unwrap_or(args)
            ));
        }
        return;
    }
    if NETWORK_CALLS.contains(&name) {
        // Addresses are no paths, but a unix socket's is: a lookup in the tree.
        if let Some(at) = args.find("sun_path=\"") {
            match string(args.as_bytes(), at + "sun_path=\"".len()) {
                Ok((p, _)) if !p.is_empty() && !p.starts_with('@') => {
                    let abs = if p.starts_with('/') {
                        p
                    } else {
                        format!("{}/{p}", proc.cwd.trim_end_matches('/'))
                    };
                    reads.lookups.insert(abs);
                }
                Ok(_) => {}
                Err(e) => reads.refuse(format!("{name}: {e}")),
            }
        }
        return;
    }
    let mut toks = match tokens(args) {
        Ok(t) => t,
        Err(e) => {
            reads.refuse(format!("{name}: {e}"));
            return;
        }
    };
    if name == "execve" || name == "execveat" {
        // The program; the argument vector that follows holds no lookups.
        if let Some(n) = toks.iter().position(|t| matches!(t, Tok::Str(_))) {
            toks.truncate(n + 1);
        }
    }
    if name == "getdents" || name == "getdents64" {
        match toks.first() {
            Some(Tok::Fd(Some(p))) => {
                reads.listings.insert(p.clone());
            }
            _ => reads.refuse(format!("{name} on a descriptor nosa could not name")),
        }
        return;
    }
    if name == "fchdir" {
        match toks.first() {
            Some(Tok::Fd(Some(p))) => proc.cwd = p.clone(),
            _ => reads.refuse("fchdir to a descriptor nosa could not name".into()),
        }
        return;
    }
    let mut dirfd: Option<Option<String>> = None;
    let mut first_path = None;
    for t in toks {
        match t {
            Tok::Fd(p) => {
                if let Some(p) = &p
                    && args.starts_with("AT_FDCWD")
                    && dirfd.is_none()
                {
                    // The kernel's own view of the working directory.
                    proc.cwd = p.clone();
                }
                dirfd = Some(p);
            }
            Tok::Str(s) if s.is_empty() => {}
            Tok::Str(s) => {
                let base = match &dirfd {
                    None => Some(proc.cwd.clone()),
                    Some(d) => d.clone(),
                };
                let abs = if s.starts_with('/') {
                    // Absolute names start at the process's root (after a chroot, a directory
                    // of the sandbox); descriptors name sandbox paths already.
                    format!("{}{s}", proc.root)
                } else {
                    match base {
                        Some(b) => format!("{}/{s}", b.trim_end_matches('/')),
                        None => {
                            reads.refuse(format!(
                                "{name}(\"{s}\") relative to a descriptor nosa could not name"
                            ));
                            return;
                        }
                    }
                };
                if is_proc_root_link(&abs) && !STAT_FAMILY.contains(&name) {
                    reads.refuse(format!(
                        "it opened {abs}, another name for a root nosa cannot follow"
                    ));
                }
                if (abs.starts_with("/dev/") || abs.starts_with("/proc/")) && !proc.exe.is_empty() {
                    reads
                        .who
                        .entry(abs.clone())
                        .or_insert_with(|| proc.exe.clone());
                }
                first_path.get_or_insert(abs.clone());
                reads.lookups.insert(abs);
            }
        }
    }
    if let Some(p) = first_path {
        match name {
            "execve" | "execveat" => {
                proc.exe = p.clone();
                reads.execs.insert(p);
            }
            "chdir" => proc.cwd = normalize(&p),
            // `ldconfig -r DIR` (dracut runs it on the image it is making): from now on the
            // process's absolute names start at DIR, which the trace follows.
            "chroot" if args.trim_end().ends_with("= 0") => proc.root = normalize(&p),
            _ => {}
        }
    }
}

/// Whether a `getrandom` call asks for bytes that are not entropy: at most 8 with
/// `GRND_NONBLOCK` (glibc's malloc tcache key in every process that allocates, and "does
/// getrandom work" probes), or at most 32 with `GRND_INSECURE` (the flag says the bytes need
/// not be fit for cryptography: systemd seeds its hash tables so). A read that may become
/// key material, an identifier or a nonce in the output (flags 0 or `GRND_RANDOM`, or more
/// bytes) is not one of these.
fn is_not_entropy(args: &str) -> bool {
    let tail = args.rsplit_once('"').map_or(args, |(_, t)| t);
    let fields: Vec<&str> = tail
        .split([',', ')'])
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect();
    let Some(n) = fields.first().and_then(|n| n.parse::<u64>().ok()) else {
        return false;
    };
    match fields.get(1).copied() {
        Some("GRND_NONBLOCK") => n <= 8,
        Some("GRND_INSECURE") => n <= 32,
        _ => false,
    }
}

/// What a lookup that ended under the sandbox's own `/dev` or `/proc` read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRead {
    /// Nothing that is an input: a sink or a source of zeros, the terminal, the sandbox's own
    /// processes, its mount table, the fixed `/proc/cmdline`.
    Quiet,
    /// A fact of the build host the kernel shows everyone (`/proc/cpuinfo`, `/proc/sys/...`):
    /// an input, digested by its content ([`super::host::fact`]) and checked again before a
    /// reuse. A file whose content changes from read to read never matches again.
    Fact(String),
    /// Something no digest can stand for: why.
    Refused(String),
}

/// What looking up `path` (where a lookup ended under the sandbox's own `/dev` or `/proc`,
/// symlinks resolved, no leading `/`) reads: host devices are refused (randomness, disks), as
/// is the process's own view of the tree through `/proc/<pid>/root` or `cwd`, which the tracer
/// cannot follow back to tree paths.
pub fn host_read(path: &str) -> HostRead {
    let mut parts = path.split('/').filter(|c| !c.is_empty());
    match parts.next() {
        Some("dev") => {
            let dev = parts.next().unwrap_or("dev");
            if QUIET_DEVICES.contains(&dev) {
                HostRead::Quiet
            } else {
                HostRead::Refused(format!("it read the host's /dev/{dev}"))
            }
        }
        Some("proc") => {
            let what = parts.next().unwrap_or("");
            let own = what.is_empty()
                || what == "self"
                || what == "thread-self"
                || what.bytes().all(|b| b.is_ascii_digit());
            if !own {
                // The sandbox's `/proc/cmdline` is a fixed file nosa binds there
                // (`trace::SANDBOX_CMDLINE`), not the host's.
                return if ["filesystems", "mounts", "cmdline"].contains(&what) {
                    HostRead::Quiet
                } else {
                    HostRead::Fact(format!("/{}", path.trim_start_matches('/')))
                };
            }
            match (parts.next(), parts.next()) {
                // Below the link: a file reached by a name the trace cannot map to the tree.
                // The link itself (stat'ed to test for a chroot) is judged by the parser.
                (Some(via @ ("root" | "cwd")), Some(_)) => {
                    HostRead::Refused(format!("it reached the tree through /proc/{what}/{via}"))
                }
                _ => HostRead::Quiet,
            }
        }
        _ => HostRead::Quiet,
    }
}

/// `a/./b/../c` -> `a/c`, lexically (for working directories; lookups resolve symlinks).
fn normalize(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// The descriptors and strings of an argument list, in order.
fn tokens(args: &str) -> Result<Vec<Tok>, String> {
    let b = args.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let at_arg_start = |i: usize| i == 0 || b[..i].ends_with(b", ") || b[i - 1] == b'[';
    while i < b.len() {
        match b[i] {
            b'"' => {
                let (s, next) = string(b, i + 1)?;
                out.push(Tok::Str(s));
                i = next;
            }
            c if at_arg_start(i) && (c.is_ascii_digit() || args[i..].starts_with("AT_FDCWD")) => {
                let end = args[i..].find([',', ')', '<']).map_or(b.len(), |n| i + n);
                let word = &args[i..end];
                let is_fd = word == "AT_FDCWD" || word.bytes().all(|c| c.is_ascii_digit());
                if end < b.len() && b[end] == b'<' && is_fd {
                    let close = args[end..]
                        .find('>')
                        .map(|n| end + n)
                        .ok_or("an unterminated descriptor path")?;
                    let path = unescape(&args[end + 1..close])?;
                    let path = path.strip_suffix(" (deleted)").unwrap_or(&path).to_string();
                    out.push(Tok::Fd(path.starts_with('/').then_some(path)));
                    i = close + 1;
                } else {
                    // A descriptor nobody decoded, if a path argument follows it.
                    if is_fd && args[end..].starts_with(", \"") {
                        out.push(Tok::Fd(None));
                    }
                    i = end.max(i + 1);
                }
            }
            _ => i += 1,
        }
    }
    Ok(out)
}

/// A C string as strace prints it, from just after its opening quote.
fn string(b: &[u8], mut i: usize) -> Result<(String, usize), String> {
    let mut out = Vec::new();
    while i < b.len() {
        match b[i] {
            b'"' => return Ok((String::from_utf8_lossy(&out).into_owned(), i + 1)),
            b'\\' => {
                let (byte, n) = escape(&b[i + 1..])?;
                out.push(byte);
                i += 1 + n;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err("an unterminated string".into())
}

fn unescape(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let (byte, n) = escape(&b[i + 1..])?;
            out.push(byte);
            i += 1 + n;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// One escape after a backslash: the byte and how many bytes it took.
fn escape(b: &[u8]) -> Result<(u8, usize), String> {
    let hex = |x: &[u8]| {
        std::str::from_utf8(x)
            .ok()
            .and_then(|s| u8::from_str_radix(s, 16).ok())
    };
    match b.first() {
        Some(b'x') => b
            .get(1..3)
            .and_then(hex)
            .map(|v| (v, 3))
            .ok_or_else(|| "a bad \\x escape".to_string()),
        Some(b'n') => Ok((b'\n', 1)),
        Some(b't') => Ok((b'\t', 1)),
        Some(b'r') => Ok((b'\r', 1)),
        Some(b'v') => Ok((0x0b, 1)),
        Some(b'f') => Ok((0x0c, 1)),
        Some(c @ b'0'..=b'7') => {
            let n = b
                .iter()
                .take(3)
                .take_while(|c| (b'0'..=b'7').contains(c))
                .count();
            let v = std::str::from_utf8(&b[..n])
                .ok()
                .and_then(|s| u8::from_str_radix(s, 8).ok())
                .unwrap_or(*c - b'0');
            Ok((v, n))
        }
        Some(&c) => Ok((c, 1)),
        None => Err("a trailing backslash".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = r#"100 execve("/usr/bin/bwrap", ["bwrap", "--bind"], 0x7ffe /* 35 vars */) = 0
100 clone(child_stack=NULL, flags=CLONE_NEWNS|SIGCHLD) = 101
101 chdir("/tmp")                     = 0
101 mkdir("newroot", 0755)            = 0
101 clone(child_stack=NULL, flags=SIGCHLD, child_tidptr=0x7f) = 102
102 execve("/bin/sh", ["/bin/sh", "/tmp/.nosa-script", "1"], 0x55 /* 2 vars */) = 0
102 openat(AT_FDCWD</>, "/etc/ld.so.cache", O_RDONLY|O_CLOEXEC) = -1 ENOENT (No such file or directory)
102 chdir("/etc")                     = 0
102 vfork( <unfinished ...>
103 execve("/usr/bin/cat", ["cat", "test/test.txt"], 0x56 /* 3 vars */ <unfinished ...>
102 <... vfork resumed>)              = 103
103 <... execve resumed>)             = 0
103 openat(AT_FDCWD</etc>, "test/test.txt", O_RDONLY) = 3</etc/test/test.txt>
103 mkdir("zz\x41", 0777)             = 0
102 newfstatat(AT_FDCWD</etc>, "/etc/foo", 0x7ffd, 0) = -1 ENOENT (No such file or directory)
102 openat(AT_FDCWD</etc>, "/etc/", O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY) = 3</etc>
102 getdents64(3</etc>, 0x5604b05685c0 /* 7 entries */, 32768) = 176
102 newfstatat(3</etc>, "", {st_mode=S_IFDIR|0755, st_size=4096, ...}, AT_EMPTY_PATH) = 0
102 symlinkat("../lib/x", 4</usr/lib>, "y") = 0
102 exit_group(0)                     = ?
"#;

    #[test]
    fn sandboxed_lookups_listings_and_execs() {
        let r = parse(TRACE);
        assert_eq!(r.untraceable, None);
        let l: Vec<&str> = r.lookups.iter().map(String::as_str).collect();
        assert!(l.contains(&"/bin/sh"));
        assert!(l.contains(&"/etc/test/test.txt"), "{l:?}");
        assert!(
            l.contains(&"/etc/zzA"),
            "cwd inherited and escapes decoded: {l:?}"
        );
        assert!(l.contains(&"/etc/foo"), "a failed lookup counts");
        assert!(l.contains(&"/usr/lib/y"), "dirfd-relative: {l:?}");
        assert!(
            !l.iter().any(|p| p.contains("newroot")),
            "bubblewrap's setup is not the program's: {l:?}"
        );
        assert_eq!(
            r.listings.iter().collect::<Vec<_>>(),
            vec![&"/etc".to_string()]
        );
        assert!(r.execs.contains("/usr/bin/cat") && r.execs.contains("/bin/sh"));
        assert!(
            !l.contains(&"/etc/cat"),
            "execve's argument vector holds no lookups: {l:?}"
        );
    }

    #[test]
    fn what_makes_a_run_unrepeatable() {
        let head = "1 execve(\"/usr/bin/bwrap\", [], 0x1 /* 1 vars */) = 0\n\
                    1 clone(child_stack=NULL, flags=SIGCHLD) = 2\n\
                    2 execve(\"/bin/sh\", [\"sh\"], 0x1 /* 1 vars */) = 0\n";
        for (line, why) in [
            ("2 getrandom(\"\\x01\", 16, GRND_NONBLOCK) = 16", "random"),
            ("2 getrandom(\"\\x01\", 8, 0) = 8", "random"),
            ("2 getrandom(\"\\x01\", 16, GRND_RANDOM) = 16", "random"),
            ("2 getrandom(\"\\x01\", 64, GRND_INSECURE) = 64", "random"),
            (
                "2 openat(AT_FDCWD</>, \"/proc/1/root\", O_RDONLY|O_DIRECTORY) = 3",
                "/proc/1/root",
            ),
            ("2 mount(\"a\", \"b\", NULL, MS_BIND, NULL) = 0", "mount"),
            ("2 pivot_root(\"a\", \"b\") = 0", "pivot_root"),
            ("2 unshare(CLONE_NEWNS) = 0", "unshare"),
            (
                "2 setns(3</proc/1/ns/mnt>, CLONE_NEWNS) = -1 EPERM",
                "setns",
            ),
            ("2 openat(7, \"rel\", O_RDONLY) = 3", "could not name"),
        ] {
            let r = parse(&format!("{head}{line}\n"));
            let got = r.untraceable.unwrap_or_default();
            assert!(got.contains(why), "{line}: {got}");
        }
        // Host state is judged where a lookup ends (`record`, symlinks resolved).
        for (path, why) in [
            ("dev/urandom", "/dev/urandom"),
            ("proc/self/root/etc/foo", "/proc/self/root"),
            ("proc/1/cwd/x", "/proc/1/cwd"),
        ] {
            match host_read(path) {
                HostRead::Refused(got) => assert!(got.contains(why), "{path}: {got}"),
                other => panic!("{path}: {other:?}"),
            }
        }
        for fact in ["proc/cpuinfo", "proc/sys/kernel/osrelease", "proc/sys"] {
            assert_eq!(
                host_read(fact),
                HostRead::Fact(format!("/{fact}")),
                "{fact}"
            );
        }
        for quiet in [
            "dev/null",
            "dev/fd/1",
            "proc/self/exe",
            "proc/mounts",
            "proc/1/root",
            "proc/cmdline",
        ] {
            assert_eq!(host_read(quiet), HostRead::Quiet, "{quiet}");
        }
        let ok = parse(&format!(
            "{head}2 openat(AT_FDCWD</>, \"/dev/null\", O_RDONLY) = 3</dev/null>\n\
             2 getrandom( <unfinished ...>\n\
             2 <... getrandom resumed>\"\\x01\\x02\", 8, GRND_NONBLOCK) = 8\n\
             2 socket(AF_UNIX, SOCK_STREAM, 0) = 3\n\
             2 getrandom(\"\\x10\\x0c\", 8, GRND_NONBLOCK) = 8\n\
             2 getrandom(\"\\x9c\", 1, GRND_NONBLOCK) = 1\n\
             2 getrandom(\"\\x87\\x4b\", 16, GRND_INSECURE) = 16\n"
        ));
        assert_eq!(ok.untraceable, None);
        // systemctl's chroot test; a socket in the sandbox's own network namespace.
        let ok = parse(&format!(
            "{head}2 newfstatat(AT_FDCWD</>, \"/proc/1/root\", {{st_mode=S_IFDIR|0755}}, 0) = 0\n\
             2 socket(AF_INET, SOCK_DGRAM|SOCK_CLOEXEC, IPPROTO_IP) = 3\n\
             2 connect(3, {{sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr(\"127.0.0.1\")}}, 16) = -1 ECONNREFUSED\n\
             2 connect(4, {{sa_family=AF_UNIX, sun_path=\"/run/nscd/socket\"}}, 110) = -1 ENOENT\n"
        ));
        assert_eq!(ok.untraceable, None);
        assert!(ok.lookups.contains("/run/nscd/socket"), "{:?}", ok.lookups);
        // chroot: the process's absolute names start there afterwards (its children's too).
        let ch = parse(&format!(
            "{head}2 chroot(\"/tmp/d/img\") = 0\n\
             2 openat(AT_FDCWD</tmp/d/img>, \"/etc/ld.so.conf\", O_RDONLY) = 3</tmp/d/img/etc/ld.so.conf>\n\
             2 clone(child_stack=NULL, flags=SIGCHLD) = 3\n\
             3 stat(\"/lib\", 0x7ffd) = 0\n\
             2 chroot(\"/nonexistent\") = -1 ENOENT (No such file or directory)\n\
             2 access(\"/x\", R_OK) = -1 ENOENT\n"
        ));
        assert_eq!(ch.untraceable, None);
        for p in [
            "/tmp/d/img/etc/ld.so.conf",
            "/tmp/d/img/lib",
            "/tmp/d/img/x",
        ] {
            assert!(ch.lookups.contains(p), "{p}: {:?}", ch.lookups);
        }
        assert!(!ch.lookups.contains("/etc/ld.so.conf"));
        assert!(!ok.lookups.iter().any(|l| l.contains("127.0.0.1")));
        // With the host's network (a traced step), the socket is an input.
        let step = parse_with(
            &format!("{head}2 socket(AF_INET, SOCK_STREAM, IPPROTO_IP) = 3\n"),
            "/",
            true,
        );
        assert!(step.untraceable.unwrap_or_default().contains("network"));
    }
}
