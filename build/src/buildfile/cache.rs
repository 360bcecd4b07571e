//! The checked build file, cached in the store's state directory so that a no-op build of a
//! file with tens of thousands of steps does not parse TOML again.
//!
//! The cache is keyed by blake3 over the format tag, the identity of the running nosa
//! executable (device, inode, size, mtime, ctime: a rebuilt or upgraded nosa, whose checks may
//! differ, never reuses another's result) and the file's **full content**: any edit, however
//! small, misses. Only files that passed every check are cached; errors are always found by
//! parsing. The file is checksummed ([`nosa_cache::codec`]) and published atomically; a damaged
//! or foreign cache file is a miss.

use std::collections::HashMap;
use std::path::Path;

use miette::SourceSpan;
use nosa_cache::Digest;
use nosa_cache::codec::{Reader, Writer};
use nosa_engine::KeyHasher;
use toml::Spanned;

use super::{BuildFile, RawCache, RawLive, RawNestos, Step};

/// Names the encoding; bump the digit when it changes.
const MAGIC: &[u8; 8] = b"nosabf07";

/// The parts of a [`BuildFile`] that come from checking its text.
pub(super) struct Checked {
    pub nestos: Option<RawNestos>,
    pub default: Vec<Spanned<String>>,
    pub steps: Vec<Step>,
    pub step_spans: HashMap<String, SourceSpan>,
    pub cache: Option<RawCache>,
    pub live: Option<RawLive>,
}

/// The cache key for build file text `text`, or `None` when the executable cannot be
/// identified (then nothing is cached).
pub(super) fn key(text: &str) -> Option<Digest> {
    let mut h = KeyHasher::new();
    h.bytes(MAGIC);
    nosa_engine::key::hash_executable(&mut h)?;
    h.bytes(text.as_bytes());
    Some(h.finish())
}

/// The cached result for `key` in `file`, if there is one.
pub(super) fn read(file: &Path, key: &Digest) -> Option<Checked> {
    let bytes = fs_err::read(file).ok()?;
    let mut r = Reader::open(&bytes, MAGIC)?;
    if r.digest()? != *key {
        return None;
    }
    let checked = decode(&mut r)?;
    r.is_empty().then_some(checked)
}

/// Stores `bf`'s checked parts under `key` (best effort: a cache that cannot be written only
/// costs the next run a parse).
pub(super) fn write(file: &Path, tmp_dir: &Path, key: &Digest, bf: &BuildFile) {
    let mut w = Writer::new(MAGIC, bf.source.len());
    w.digest(key);
    encode(&mut w, bf);
    let _ = nosa_cache::atomic::write_atomic(tmp_dir, file, &w.finish());
}

fn spanned(w: &mut Writer, s: &Spanned<String>) {
    w.str(s.get_ref());
    w.u64(s.span().start as u64);
    w.u64(s.span().end as u64);
}

fn spanned_list(w: &mut Writer, v: &[Spanned<String>]) {
    w.u64(v.len() as u64);
    for s in v {
        spanned(w, s);
    }
}

fn strings(w: &mut Writer, v: &[String]) {
    w.u64(v.len() as u64);
    for s in v {
        w.str(s);
    }
}

fn encode(w: &mut Writer, bf: &BuildFile) {
    // Destructured so that a field added to any of these types cannot be left out here.
    let BuildFile {
        workdir: _,
        path: _,
        source: _,
        nestos,
        default,
        steps,
        step_spans,
        cache,
        live,
    } = bf;
    w.bool(nestos.is_some());
    if let Some(RawNestos {
        config,
        arches,
        targets,
        keep_last_n,
        variant,
    }) = nestos
    {
        spanned(w, config);
        spanned_list(w, arches);
        spanned_list(w, targets);
        w.bool(keep_last_n.is_some());
        if let Some(n) = keep_last_n {
            w.u64(u64::from(*n));
        }
        w.bool(variant.is_some());
        if let Some(v) = variant {
            w.str(v);
        }
    }
    spanned_list(w, default);
    w.u64(steps.len() as u64);
    for Step {
        name,
        inputs,
        run,
        outputs,
        deps,
        trace,
        network,
    } in steps
    {
        w.str(name);
        strings(w, inputs);
        w.str(run);
        strings(w, outputs);
        strings(w, deps);
        w.bool(*trace);
        w.bool(*network);
    }
    w.u64(step_spans.len() as u64);
    for (name, span) in step_spans {
        w.str(name);
        w.u64(span.offset() as u64);
        w.u64(span.len() as u64);
    }
    w.bool(cache.is_some());
    if let Some(RawCache {
        remote,
        read_only,
        auth_env,
        instance,
        tls_roots,
        execute,
    }) = cache
    {
        spanned(w, remote);
        w.bool(*read_only);
        w.bool(auth_env.is_some());
        if let Some(v) = auth_env {
            w.str(v);
        }
        for v in [instance, tls_roots] {
            w.bool(v.is_some());
            if let Some(v) = v {
                spanned(w, v);
            }
        }
        w.bool(execute.is_some());
        if let Some(e) = execute {
            w.bool(*e.get_ref());
            w.u64(e.span().start as u64);
            w.u64(e.span().end as u64);
        }
    }
    w.bool(live.is_some());
    if let Some(RawLive { live_ignition }) = live {
        w.bool(live_ignition.is_some());
        if let Some(v) = live_ignition {
            spanned(w, v);
        }
    }
}

fn read_spanned(r: &mut Reader<'_>) -> Option<Spanned<String>> {
    let s = r.str()?.to_string();
    let (start, end) = (r.count()?, r.count()?);
    Some(Spanned::new(start..end, s))
}

fn read_spanned_list(r: &mut Reader<'_>) -> Option<Vec<Spanned<String>>> {
    let n = r.count()?;
    (0..n).map(|_| read_spanned(r)).collect()
}

fn read_strings(r: &mut Reader<'_>) -> Option<Vec<String>> {
    let n = r.count()?;
    (0..n).map(|_| r.str().map(str::to_string)).collect()
}

fn decode(r: &mut Reader<'_>) -> Option<Checked> {
    let nestos = if r.bool()? {
        Some(RawNestos {
            config: read_spanned(r)?,
            arches: read_spanned_list(r)?,
            targets: read_spanned_list(r)?,
            keep_last_n: if r.bool()? {
                Some(u32::try_from(r.u64()?).ok()?)
            } else {
                None
            },
            variant: if r.bool()? {
                Some(r.str()?.to_string())
            } else {
                None
            },
        })
    } else {
        None
    };
    let default = read_spanned_list(r)?;
    let n = r.count()?;
    let mut steps = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        steps.push(Step {
            name: r.str()?.to_string(),
            inputs: read_strings(r)?,
            run: r.str()?.to_string(),
            outputs: read_strings(r)?,
            deps: read_strings(r)?,
            trace: r.bool()?,
            network: r.bool()?,
        });
    }
    let n = r.count()?;
    let mut step_spans = HashMap::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        let name = r.str()?.to_string();
        let (offset, len) = (r.count()?, r.count()?);
        step_spans.insert(name, SourceSpan::from((offset, len)));
    }
    let cache = if r.bool()? {
        Some(RawCache {
            remote: read_spanned(r)?,
            read_only: r.bool()?,
            auth_env: if r.bool()? {
                Some(r.str()?.to_string())
            } else {
                None
            },
            instance: if r.bool()? {
                Some(read_spanned(r)?)
            } else {
                None
            },
            tls_roots: if r.bool()? {
                Some(read_spanned(r)?)
            } else {
                None
            },
            execute: if r.bool()? {
                let v = r.bool()?;
                let (start, end) = (r.count()?, r.count()?);
                Some(Spanned::new(start..end, v))
            } else {
                None
            },
        })
    } else {
        None
    };
    let live = if r.bool()? {
        Some(RawLive {
            live_ignition: if r.bool()? {
                Some(read_spanned(r)?)
            } else {
                None
            },
        })
    } else {
        None
    };
    Some(Checked {
        nestos,
        default,
        steps,
        step_spans,
        cache,
        live,
    })
}
