//! The `kernel` package: vmlinuz, config and a module subset (with dependencies, depmod rerun) from Debian's linux-image.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use crate::Result;
use crate::payload::{Payload, add_host_file};
use crate::spec::FileSpec;
use crate::tools::run;

/// Module name as modprobe sees it: file name without `.ko[.xz|.gz|.zst]`, `-` as `_`.
pub fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = [".ko.xz", ".ko.gz", ".ko.zst", ".ko"]
        .iter()
        .find_map(|ext| base.strip_suffix(ext))
        .unwrap_or(base);
    stem.replace('-', "_")
}

/// Parsed modules.dep: module name -> (relative path, relative paths of all dependencies).
pub type ModulesDep = BTreeMap<String, (String, Vec<String>)>;

pub fn parse_modules_dep(text: &str) -> ModulesDep {
    text.lines()
        .filter_map(|line| {
            let (module, deps) = line.split_once(':')?;
            let deps = deps.split_whitespace().map(str::to_string).collect();
            Some((module_name(module), (module.to_string(), deps)))
        })
        .collect()
}

/// Relative paths of `wanted` and everything they depend on. Built-in modules
/// are reported on stderr and skipped; unknown ones are an error.
pub fn closure(
    dep: &ModulesDep,
    builtin: &BTreeSet<String>,
    wanted: &[String],
) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for w in wanted {
        let name = module_name(w);
        match dep.get(&name) {
            Some((path, deps)) => {
                out.insert(path.clone());
                out.extend(deps.iter().cloned());
            }
            None if builtin.contains(&name) => eprintln!("fixture-distro: kernel: {w} is built in"),
            None => {
                return Err(
                    format!("kernel: module {w} is neither in modules.dep nor built in").into(),
                );
            }
        }
    }
    Ok(out)
}

/// Builds the kernel payload from an unpacked linux-image .deb. Returns the
/// kernel release (`6.1.0-NN-amd64`, the /usr/lib/modules directory name).
pub fn kernel_payload(
    unpacked: &Path,
    modules: &[String],
    work: &Path,
) -> Result<(String, Payload)> {
    let moddir_root = unpacked.join("lib/modules");
    let mut kvers = Vec::new();
    for e in fs_err::read_dir(&moddir_root)? {
        kvers.push(e?.file_name().to_string_lossy().into_owned());
    }
    let kver = match kvers.as_slice() {
        [k] => k.clone(),
        _ => {
            return Err(format!(
                "expected one kernel in {}, found {kvers:?}",
                moddir_root.display()
            )
            .into());
        }
    };
    let src = moddir_root.join(&kver);
    // The .deb ships no modules.dep (its postinst runs depmod): make one.
    if !src.join("modules.dep").is_file() {
        run(Command::new("depmod").arg("-b").arg(unpacked).arg(&kver))?;
    }
    let dep = parse_modules_dep(&fs_err::read_to_string(src.join("modules.dep"))?);
    let builtin: BTreeSet<String> = fs_err::read_to_string(src.join("modules.builtin"))?
        .lines()
        .map(module_name)
        .collect();
    let needed = closure(&dep, &builtin, modules)?;

    // Stage the subset and let depmod regenerate every index for it.
    let stage = work.join("kernel-stage");
    let stage_mod = stage.join("lib/modules").join(&kver);
    fs_err::create_dir_all(&stage_mod)?;
    for rel in &needed {
        let to = stage_mod.join(rel);
        fs_err::create_dir_all(to.parent().ok_or("module path has no parent")?)?;
        fs_err::copy(src.join(rel), &to)?;
    }
    for f in ["modules.builtin", "modules.builtin.modinfo"] {
        fs_err::copy(src.join(f), stage_mod.join(f))?;
    }
    let order: String = fs_err::read_to_string(src.join("modules.order"))?
        .lines()
        .filter(|l| needed.contains(*l))
        .map(|l| format!("{l}\n"))
        .collect();
    fs_err::write(stage_mod.join("modules.order"), order)?;
    run(Command::new("depmod").arg("-b").arg(&stage).arg(&kver))?;

    let mut payload = Payload::new();
    let base = format!("/usr/lib/modules/{kver}");
    payload.insert(base.clone(), FileSpec::Dir { mode: 0o755 });
    for entry in walkdir::WalkDir::new(&stage_mod)
        .min_depth(1)
        .sort_by_file_name()
    {
        let entry = entry?;
        let rel = entry
            .path()
            .strip_prefix(&stage_mod)?
            .to_string_lossy()
            .into_owned();
        let path = format!("{base}/{rel}");
        if entry.file_type().is_dir() {
            payload.insert(path, FileSpec::Dir { mode: 0o755 });
        } else {
            add_host_file(&mut payload, &path, entry.path(), Some(0o644))?;
        }
    }
    // Where rpm-ostree and ostree look for the kernel.
    add_host_file(
        &mut payload,
        &format!("{base}/vmlinuz"),
        &unpacked.join(format!("boot/vmlinuz-{kver}")),
        Some(0o755),
    )?;
    add_host_file(
        &mut payload,
        &format!("{base}/config"),
        &unpacked.join(format!("boot/config-{kver}")),
        Some(0o644),
    )?;
    Ok((kver, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_and_closure() {
        assert_eq!(
            module_name("kernel/fs/nls/nls_iso8859-1.ko"),
            "nls_iso8859_1"
        );
        assert_eq!(
            module_name("kernel/arch/x86/crypto/crc32c-intel.ko.xz"),
            "crc32c_intel"
        );
        let dep = parse_modules_dep(
            "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n\
             kernel/lib/crc16.ko:\nkernel/fs/mbcache.ko:\nkernel/fs/jbd2/jbd2.ko:\nkernel/fs/xfs/xfs.ko:\n",
        );
        let builtin = BTreeSet::from(["nls_base".to_string()]);
        let got = closure(&dep, &builtin, &["ext4".into(), "nls_base".into()]).unwrap();
        assert_eq!(got.len(), 4);
        assert!(got.contains("kernel/fs/jbd2/jbd2.ko"));
        assert!(closure(&dep, &builtin, &["nope".into()]).is_err());
    }
}
