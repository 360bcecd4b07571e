//! The only unsafe code of the crate: a safe wrapper over libsolv (`libsolv-sys`) with the calls
//! dnf makes: an rpm pool, rpm-md repositories, a considered map, a solver and its problems.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_uint};
use std::os::fd::IntoRawFd;
use std::path::Path;

use libsolv_sys::ffi as sys;

pub use sys::Id;

// Not in libsolv-sys's generated bindings (their headers are not among the ones it binds); both
// are exported by Debian's libsolv/libsolvext 0.7 (checked with `nm -D`).
unsafe extern "C" {
    fn solv_xfopen_fd(fname: *const c_char, fd: c_int, mode: *const c_char) -> *mut sys::FILE;
    fn pool_evrcmp_str(
        pool: *const sys::Pool,
        evr1: *const c_char,
        evr2: *const c_char,
        mode: c_int,
    ) -> c_int;
}

/// The libsolv version this process runs with (e.g. `0.7.23`).
pub fn libsolv_version() -> String {
    // SAFETY: `solv_version` is a NUL-terminated constant string in libsolv.
    owned(unsafe { sys::solv_version.as_ptr() })
}

/// `EVRCMP_COMPARE` from evr.h.
const EVRCMP_COMPARE: c_int = 0;

/// libsolv failed (a metadata file it could not parse, ...).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SolvError(pub String);

fn cstring(s: &str) -> Result<CString, SolvError> {
    CString::new(s).map_err(|_| SolvError(format!("NUL byte in {s:?}")))
}

/// Copies a C string owned by libsolv (null: empty).
fn owned(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: libsolv returns NUL-terminated strings that live at least until the next call
    // into the pool (temporary string space); we copy before making another call.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// An owned libsolv queue.
struct Queue(sys::Queue);

impl Queue {
    fn new() -> Queue {
        let mut q = std::mem::MaybeUninit::<sys::Queue>::uninit();
        // SAFETY: queue_init initialises every field of the queue it is given.
        unsafe { sys::queue_init(q.as_mut_ptr()) };
        // SAFETY: initialised just above.
        Queue(unsafe { q.assume_init() })
    }
    fn push(&mut self, id: Id) {
        // SAFETY: the queue is initialised; queue_insert at `count` appends, growing as needed.
        unsafe { sys::queue_insert(&mut self.0, self.0.count, id) };
    }
    fn as_slice(&self) -> &[Id] {
        if self.0.count == 0 {
            return &[];
        }
        // SAFETY: `elements` points to `count` initialised ids owned by the queue.
        unsafe { std::slice::from_raw_parts(self.0.elements, self.0.count as usize) }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // SAFETY: the queue was initialised by queue_init and is freed once.
        unsafe { sys::queue_free(&mut self.0) };
    }
}

/// A solvable's identity and location as the rule needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SolvableInfo {
    pub id: Id,
    pub name: String,
    pub evr: String,
    pub arch: String,
    /// Index of the repository, in the order they were added.
    pub repo: usize,
}

/// Download facts of a solvable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub location: String,
    pub checksum_type: String,
    pub checksum: String,
    pub size: u64,
    pub sourcerpm: String,
}

/// An rpm pool (DISTTYPE_RPM, dnf's pool flags) with rpm-md repositories.
pub struct Pool {
    raw: *mut sys::Pool,
    repos: Vec<*mut sys::Repo>,
    considered: Option<Box<sys::Map>>,
}

impl Pool {
    /// A pool for `arch` with dnf's settings: rpm semantics, libsolv's arch policy for `arch`
    /// (what dnf uses), excluded packages kept out of the candidates.
    pub fn new(arch: &str) -> Result<Pool, SolvError> {
        let arch = cstring(arch)?;
        // SAFETY: pool_create returns a fresh pool or aborts on OOM.
        let raw = unsafe { sys::pool_create() };
        let pool = Pool {
            raw,
            repos: Vec::new(),
            considered: None,
        };
        // SAFETY: `raw` is a valid pool; the flags and the arch string are valid inputs.
        unsafe {
            if sys::pool_setdisttype(raw, sys::DISTTYPE_RPM as c_int) < 0 {
                return Err(SolvError(
                    "this libsolv cannot do rpm semantics (DISTTYPE_RPM)".into(),
                ));
            }
            sys::pool_set_flag(raw, sys::POOL_FLAG_WHATPROVIDESWITHDISABLED as c_int, 1);
            sys::pool_setarch(raw, arch.as_ptr());
        }
        Ok(pool)
    }

    /// Adds a repository from rpm-md files (compressed as named: .gz, .xz, .zst). `priority`
    /// and `cost` are dnf's (lower wins); libsolv's are negated, as libdnf does.
    pub fn add_rpmmd(
        &mut self,
        name: &str,
        priority: i64,
        cost: i64,
        primary: (&Path, &str),
        filelists: Option<(&Path, &str)>,
    ) -> Result<usize, SolvError> {
        let cname = cstring(name)?;
        // SAFETY: valid pool and name; the repo is owned by the pool and freed with it.
        let repo = unsafe { sys::repo_create(self.raw, cname.as_ptr()) };
        // SAFETY: `repo` is valid.
        unsafe {
            (*repo).priority = -(priority.clamp(-(1 << 30), 1 << 30) as c_int);
            (*repo).subpriority = -(cost.clamp(-(1 << 30), 1 << 30) as c_int);
        }
        self.read_rpmmd(repo, primary, None, 0)?;
        if let Some(fl) = filelists {
            self.read_rpmmd(repo, fl, Some(c"FL"), sys::REPO_EXTEND_SOLVABLES as c_int)?;
        }
        // SAFETY: `repo` is valid; internalize makes the added data searchable.
        unsafe { sys::repo_internalize(repo) };
        self.repos.push(repo);
        Ok(self.repos.len() - 1)
    }

    fn read_rpmmd(
        &mut self,
        repo: *mut sys::Repo,
        (path, name): (&Path, &str),
        language: Option<&CStr>,
        flags: c_int,
    ) -> Result<(), SolvError> {
        let file = fs_err::File::open(path).map_err(|e| SolvError(e.to_string()))?;
        let fd = file.into_parts().0.into_raw_fd();
        // The name only tells solv_xfopen_fd the compression (by suffix).
        let cname = cstring(name)?;
        // SAFETY: `fd` is an open descriptor whose ownership passes to the FILE (closed by
        // fclose); the name and mode are valid C strings.
        let fp = unsafe { solv_xfopen_fd(cname.as_ptr(), fd, c"r".as_ptr()) };
        if fp.is_null() {
            // SAFETY: solv_xfopen_fd failed, so it did not take the descriptor.
            unsafe { libc::close(fd) };
            return Err(SolvError(format!(
                "{name}: cannot open (unknown compression?)"
            )));
        }
        // SAFETY: valid repo and FILE; `language` is null or a valid C string.
        let rc = unsafe {
            sys::repo_add_rpmmd(
                repo,
                fp.cast(),
                language.map_or(std::ptr::null(), CStr::as_ptr),
                flags,
            )
        };
        // SAFETY: `fp` came from solv_xfopen_fd and is closed once.
        unsafe { libc::fclose(fp.cast()) };
        if rc != 0 {
            // SAFETY: valid pool; pool_errstr returns the last error message.
            let msg = owned(unsafe { sys::pool_errstr(self.raw) });
            return Err(SolvError(format!("{name}: {msg}")));
        }
        Ok(())
    }

    /// Adds file provides for every file dependency and builds the provides index. Call after
    /// the last repository and before any query.
    pub fn finish(&mut self) {
        // SAFETY: valid pool; both calls only need the repositories to be internalized.
        unsafe {
            sys::pool_addfileprovides(self.raw);
            sys::pool_createwhatprovides(self.raw);
        }
    }

    /// Every solvable of every repository.
    pub fn solvables(&self) -> Vec<SolvableInfo> {
        let mut out = Vec::new();
        // SAFETY: valid pool; ids 2..nsolvables index `solvables` (0 and 1 are reserved).
        let n = unsafe { (*self.raw).nsolvables };
        for id in 2..n {
            let s = self.solvable(id);
            // SAFETY: `s` points into the pool's solvable array.
            let (repo, name, evr, arch) = unsafe { ((*s).repo, (*s).name, (*s).evr, (*s).arch) };
            let Some(repo) = self.repos.iter().position(|r| *r == repo) else {
                continue;
            };
            out.push(SolvableInfo {
                id,
                name: self.id2str(name),
                evr: self.id2str(evr),
                arch: self.id2str(arch),
                repo,
            });
        }
        out
    }

    fn solvable(&self, id: Id) -> *mut sys::Solvable {
        // SAFETY: callers pass ids below nsolvables (from `solvables` or the solver).
        unsafe { (*self.raw).solvables.add(id as usize) }
    }

    fn id2str(&self, id: Id) -> String {
        // SAFETY: valid pool and an id that the pool handed out.
        owned(unsafe { sys::pool_id2str(self.raw, id) })
    }

    /// Whether libsolv's arch policy accepts `arch` (the pool's arch, compatible arches, noarch).
    pub fn arch_installable(&self, arch: &str) -> bool {
        let Ok(c) = CString::new(arch) else {
            return false;
        };
        // SAFETY: valid pool and string; create=0 only looks the string up.
        let id = unsafe { sys::pool_str2id(self.raw, c.as_ptr(), 0) };
        // SAFETY: valid pool; `id2arch` is sized `lastarch + 1` when an arch is set.
        unsafe {
            let p = &*self.raw;
            id > 0
                && id as u32 <= p.lastarch as u32
                && !p.id2arch.is_null()
                && *p.id2arch.add(id as usize) != 0
        }
    }

    /// rpm's comparison of two `[epoch:]version[-release]` strings.
    pub fn evrcmp(&self, a: &str, b: &str) -> std::cmp::Ordering {
        let (Ok(a), Ok(b)) = (CString::new(a), CString::new(b)) else {
            return std::cmp::Ordering::Equal;
        };
        // SAFETY: valid pool and strings.
        let r = unsafe { pool_evrcmp_str(self.raw, a.as_ptr(), b.as_ptr(), EVRCMP_COMPARE) };
        r.cmp(&0)
    }

    /// Makes exactly the solvables in `visible` installable, as dnf's excludes do.
    pub fn set_considered(&mut self, visible: &[Id]) {
        // SAFETY: valid pool.
        let n = unsafe { (*self.raw).nsolvables };
        let mut map = Box::new(sys::Map {
            map: std::ptr::null_mut(),
            size: 0,
        });
        // SAFETY: map_init allocates a zeroed bitmap for `n` bits; MAPSET is a bit set.
        unsafe {
            sys::map_init(&mut *map, n);
            for &id in visible {
                *map.map.add((id >> 3) as usize) |= 1 << (id & 7);
            }
            (*self.raw).considered = &mut *map;
        }
        if let Some(mut old) = self.considered.replace(map) {
            // SAFETY: the old map is no longer referenced by the pool.
            unsafe { sys::map_free(&mut *old) };
        }
    }

    /// Download facts of `id` from its repository metadata.
    pub fn location(&self, id: Id) -> Location {
        let s = self.solvable(id);
        let mut medianr: c_uint = 0;
        let mut ctype: Id = 0;
        // SAFETY: `s` is a valid solvable; the lookups copy from the repo data.
        unsafe {
            let location = owned(sys::solvable_lookup_location(s, &mut medianr));
            let checksum = owned(sys::solvable_lookup_checksum(
                s,
                sys::solv_knownid_SOLVABLE_CHECKSUM as Id,
                &mut ctype,
            ));
            let checksum_type = owned(sys::solv_chksum_type2str(ctype));
            let size =
                sys::solvable_lookup_num(s, sys::solv_knownid_SOLVABLE_DOWNLOADSIZE as Id, 0);
            let sourcerpm = owned(sys::solvable_lookup_sourcepkg(s));
            Location {
                location,
                checksum_type,
                checksum,
                size,
                sourcerpm,
            }
        }
    }

    /// The solvables libsolv's `selection_make` finds for `spec` with `flags` (SELECTION_*):
    /// provides (with relations) and file lists, as dnf's provides and file forms.
    pub fn select(&self, spec: &str, flags: u32) -> Vec<Id> {
        let Ok(c) = CString::new(spec) else {
            return Vec::new();
        };
        let mut sel = Queue::new();
        let mut pkgs = Queue::new();
        // SAFETY: valid pool with whatprovides built, valid string and queues.
        unsafe {
            sys::selection_make(self.raw, &mut sel.0, c.as_ptr(), flags as c_int);
            sys::selection_solvables(self.raw, &mut sel.0, &mut pkgs.0);
        }
        pkgs.as_slice().to_vec()
    }

    /// libsolv's inline `pool_match_nevr`: does solvable `id` match name dependency `dep`.
    fn match_nevr(&self, id: Id, dep: Id) -> bool {
        let s = self.solvable(id);
        if (dep as u32) & 0x8000_0000 == 0 {
            // SAFETY: valid solvable.
            return unsafe { (*s).name } == dep;
        }
        // SAFETY: valid pool, solvable and relational dependency id.
        unsafe { sys::pool_match_nevr_rel(self.raw, s, dep) != 0 }
    }

    /// A `what` for a SOLVER_SOLVABLE_ONE_OF job over `ids`.
    pub fn one_of(&mut self, ids: &[Id]) -> Id {
        let mut q = Queue::new();
        for &id in ids {
            q.push(id);
        }
        // SAFETY: valid pool and queue; the ids are solvables of this pool.
        unsafe { sys::pool_queuetowhatprovides(self.raw, &mut q.0) }
    }

    /// The solvables among `candidates` that obsolete one of `ids` (dnf adds them to a
    /// request by plain name).
    pub fn obsoleters(&self, ids: &[Id], candidates: &[Id]) -> Vec<Id> {
        let mut out = Vec::new();
        for &c in candidates {
            if ids.contains(&c) {
                continue;
            }
            let s = self.solvable(c);
            let mut obs = Queue::new();
            // SAFETY: valid solvable; fills `obs` with its Obsoletes dependency ids.
            unsafe {
                sys::solvable_lookup_deparray(
                    s,
                    sys::solv_knownid_SOLVABLE_OBSOLETES as Id,
                    &mut obs.0,
                    -1,
                )
            };
            let hit = obs.as_slice().iter().any(|&dep| {
                // SAFETY: valid solvables and dependency id (rpm obsoletes match names).
                ids.iter().any(|&i| self.match_nevr(i, dep))
            });
            if hit {
                out.push(c);
            }
        }
        out
    }

    /// `name-evr.arch` as libsolv prints it.
    pub fn solvable2str(&self, id: Id) -> String {
        // SAFETY: valid pool and solvable.
        owned(unsafe { sys::pool_solvable2str(self.raw, self.solvable(id)) })
    }

    /// Whether `id` provides the dependency `dep` (an id from a problem rule).
    fn provides_dep(&self, id: Id, dep: Id) -> bool {
        // SAFETY: valid solvable and dependency id.
        unsafe {
            sys::solvable_matchesdep(
                self.solvable(id),
                sys::solv_knownid_SOLVABLE_PROVIDES as Id,
                dep,
                0,
            ) != 0
        }
    }

    /// Solves `jobs` (pairs of how, what) with libdnf's solver flags.
    pub fn solve(&mut self, jobs: &[(u32, Id)], weak_deps: bool) -> Result<Vec<Id>, Vec<Problem>> {
        let mut q = Queue::new();
        for &(how, what) in jobs {
            q.push(how as Id);
            q.push(what);
        }
        // SAFETY: valid pool with whatprovides built; the solver is freed by `Solver`'s drop.
        let solver = Solver(unsafe { sys::solver_create(self.raw) });
        // SAFETY: valid solver; these are libdnf's flags (hy-goal init_solver).
        unsafe {
            for (flag, v) in [
                (sys::SOLVER_FLAG_ALLOW_VENDORCHANGE, 1),
                (sys::SOLVER_FLAG_KEEP_ORPHANS, 1),
                (sys::SOLVER_FLAG_BEST_OBEY_POLICY, 1),
                (sys::SOLVER_FLAG_YUM_OBSOLETES, 1),
                (sys::SOLVER_FLAG_IGNORE_RECOMMENDED, c_int::from(!weak_deps)),
            ] {
                sys::solver_set_flag(solver.0, flag as c_int, v);
            }
        }
        // SAFETY: valid solver and job queue.
        let nproblems = unsafe { sys::solver_solve(solver.0, &mut q.0) };
        if nproblems == 0 {
            let mut d = Queue::new();
            // SAFETY: valid solver; fills `d` with the decisions.
            unsafe { sys::solver_get_decisionqueue(solver.0, &mut d.0) };
            let mut ids: Vec<Id> = d.as_slice().iter().copied().filter(|&p| p > 1).collect();
            ids.sort_unstable();
            return Ok(ids);
        }
        Err(self.problems(&solver))
    }

    fn problems(&self, solver: &Solver) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut problem: Id = 0;
        loop {
            // SAFETY: valid solver; 0 starts the iteration, 0 ends it.
            problem = unsafe { sys::solver_next_problem(solver.0, problem) };
            if problem == 0 {
                break;
            }
            let mut rules = Queue::new();
            // SAFETY: valid solver and problem id.
            unsafe { sys::solver_findallproblemrules(solver.0, problem, &mut rules.0) };
            let mut infos = Vec::new();
            for &rid in rules.as_slice() {
                let (mut source, mut target, mut dep) = (0, 0, 0);
                // SAFETY: valid solver and a rule id from findallproblemrules.
                let kind = unsafe {
                    sys::solver_ruleinfo(solver.0, rid, &mut source, &mut target, &mut dep)
                };
                // SAFETY: same values as returned by solver_ruleinfo.
                let text = owned(unsafe {
                    sys::solver_problemruleinfo2str(solver.0, kind, source, target, dep)
                });
                let kind = match kind {
                    sys::SolverRuleinfo_SOLVER_RULE_PKG_NOTHING_PROVIDES_DEP => {
                        RuleKind::NothingProvides
                    }
                    sys::SolverRuleinfo_SOLVER_RULE_PKG_REQUIRES => RuleKind::Requires,
                    sys::SolverRuleinfo_SOLVER_RULE_JOB
                    | sys::SolverRuleinfo_SOLVER_RULE_JOB_NOTHING_PROVIDES_DEP => RuleKind::Job,
                    _ => RuleKind::Other,
                };
                let info = RuleInfo {
                    kind,
                    source,
                    target,
                    dep,
                    text,
                };
                if !infos.contains(&info) {
                    infos.push(info);
                }
            }
            out.push(Problem { rules: infos });
        }
        out
    }

    /// For a problem, the packages whose requirement leads to `to`: edges `a -> b` where a rule
    /// says `a` requires a dependency that `b` provides.
    pub fn requires_edges(&self, problem: &Problem) -> Vec<(Id, Id)> {
        // SAFETY: valid pool.
        let n = unsafe { (*self.raw).nsolvables };
        let mut pkgs: Vec<Id> = Vec::new();
        // Job rules carry a job index and flags, not solvables.
        for r in problem.rules.iter().filter(|r| r.kind != RuleKind::Job) {
            for id in [r.source, r.target] {
                if id > 1 && id < n && !pkgs.contains(&id) {
                    pkgs.push(id);
                }
            }
        }
        let mut edges = Vec::new();
        for r in problem
            .rules
            .iter()
            .filter(|r| r.kind == RuleKind::Requires)
        {
            if !pkgs.contains(&r.source) {
                continue;
            }
            for &b in &pkgs {
                if b != r.source && self.provides_dep(b, r.dep) {
                    edges.push((r.source, b));
                }
            }
        }
        edges
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: the pool is freed once; the considered map is detached first because it is
        // ours (a Box), not the pool's.
        unsafe {
            (*self.raw).considered = std::ptr::null_mut();
            if let Some(mut m) = self.considered.take() {
                sys::map_free(&mut *m);
            }
            sys::pool_free(self.raw);
        }
    }
}

struct Solver(*mut sys::Solver);

impl Drop for Solver {
    fn drop(&mut self) {
        // SAFETY: created by solver_create, freed once, before its pool.
        unsafe { sys::solver_free(self.0) };
    }
}

/// What kind of rule a problem line comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// `nothing provides DEP needed by SOURCE`.
    NothingProvides,
    /// `SOURCE requires DEP, but none of the providers can be installed`.
    Requires,
    /// A job (a requested package).
    Job,
    /// Conflicts, obsoletes, same name, not installable, ...
    Other,
}

/// One rule of a problem, with libsolv's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    pub kind: RuleKind,
    pub source: Id,
    pub target: Id,
    pub dep: Id,
    pub text: String,
}

/// An unsolvable part of the request: every rule that takes part in it.
#[derive(Debug, Clone)]
pub struct Problem {
    pub rules: Vec<RuleInfo>,
}
