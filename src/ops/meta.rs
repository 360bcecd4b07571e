//! `nosa meta`: reads and edits a build's meta.json, checked before it is written.

use nosa_build::BuildsDir;
use nosa_build::meta_check::Source;
use nosa_build::meta_edit::{self, EditError};

use crate::cli::{Cli, MetaArgs};
use crate::exit::{Failure, OpResult, runtime};
use crate::ops::{find_workdir, lock};

/// `nosa meta`: one of `--get`, `--dump`, `--image-path`, `--set` on build `--build` (the
/// latest) for `--arch` (the build's first).
pub fn meta(cli: &Cli, a: &MetaArgs) -> OpResult {
    let (workdir, _) = find_workdir(cli)?;
    let builds = BuildsDir::of(&workdir);
    let (id, arch) = meta_edit::select(&builds, a.build.as_deref(), a.arch.as_deref(), None)?;
    let file = format!("builds/{id}/{arch}/meta.json");
    let path = builds.meta_path(&id, &arch);
    if !path.is_file() {
        return Err(Failure::Config(miette::miette!(
            help = "`nosa build` records it; `nosa list` shows the builds and their arches",
            "build {id} has no {file}"
        )));
    }
    if !a.set.is_empty() {
        let _lock = lock(cli, &workdir, "nosa meta --set")?;
        return set(&builds, &id, &arch, &file, &a.set);
    }
    let doc = builds
        .meta_value(&id, &arch)
        .map_err(|e| Failure::Build(Some(miette::miette!("{e}"))))?;
    if a.dump {
        let mut bytes = fs_err::read(&path).map_err(runtime)?;
        if !bytes.ends_with(b"\n") {
            bytes.push(b'\n');
        }
        use std::io::Write;
        std::io::stdout().write_all(&bytes).map_err(runtime)?;
        return Ok(());
    }
    if let Some(kind) = &a.image_path {
        let images: Vec<String> = doc["images"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let rel = doc["images"][kind.as_str()]["path"]
            .as_str()
            .ok_or_else(|| {
                Failure::Config(miette::miette!(
                    help = format!(
                        "its images: {}; `nosa build {kind}` makes one",
                        if images.is_empty() {
                            "none".into()
                        } else {
                            images.join(", ")
                        }
                    ),
                    "build {id} ({arch}) has no image {kind} in {file}"
                ))
            })?;
        let p = builds.arch_dir(&id, &arch).join(rel);
        if !p.exists() {
            eprintln!("warning: {} does not exist", p.display());
        }
        println!("{}", p.display());
        return Ok(());
    }
    for key in &a.get {
        let v = meta_edit::get(&doc, key).ok_or_else(|| {
            let top: Vec<&String> = doc
                .as_object()
                .map(|m| m.keys().collect())
                .unwrap_or_default();
            Failure::Config(miette::miette!(
                help = format!(
                    "keys at the top: {}; `nosa meta --dump` shows the file",
                    top.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "{file} has no key {key}"
            ))
        })?;
        println!("{}", meta_edit::render(v));
    }
    Ok(())
}

/// `--set`: every assignment applied and the result checked, or nothing written.
fn set(builds: &BuildsDir, id: &str, arch: &str, file: &str, sets: &[String]) -> OpResult {
    match meta_edit::edit(builds, id, arch, sets) {
        Ok(done) => {
            for (keys, v) in &done.set {
                let key = keys.join(".");
                eprintln!("set {key} = {v} in {file}");
                if meta_edit::rewritten_by_build(keys) {
                    eprintln!(
                        "warning: nosa writes {key} when it records build {id} again (a \
                         rebuild of an unchanged tree keeps the id): this value lasts until then"
                    );
                }
            }
            Ok(())
        }
        Err(EditError::Invalid(problems)) => {
            // The list is printed as it is (a report would wrap its long lines).
            eprintln!("{file} would not be valid, so nothing was written:");
            for p in &problems {
                let whose = match p.source {
                    Source::V1 => "",
                    Source::Nosa => " [nosa's rule, stricter than v1]",
                };
                eprintln!("  {p}{whose}\n    fix: {}", p.fix);
            }
            Err(Failure::Config(miette::miette!(
                help = "the rules are coreos-assembler's v1 meta.json schema plus nosa's few \
                        (docs/lifecycle.md); `nosa meta --dump` shows the file",
                "{} problem{} in the new meta.json (above); {file} is unchanged",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            )))
        }
        Err(e @ EditError::Set(_)) => Err(Failure::Config(miette::miette!("{e}"))),
        Err(e @ (EditError::Read(_) | EditError::Io(_))) => {
            Err(Failure::Build(Some(miette::miette!("{file}: {e}"))))
        }
    }
}
