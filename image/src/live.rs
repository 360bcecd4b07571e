//! The live artifacts, as nestos-assembler's `buildextend-live` names and lays them out, in two
//! engine nodes:
//!
//! - `live-pxe:<arch>` ([`LivePxeRule`]): the commit deployed as the metal image deploys it,
//!   its physical root packed by `mksquashfs` as `root.squashfs`, the only member of the newc
//!   cpio `rootfs.img`; the deployment's kernel (`vmlinuz`) and initramfs (`initrd.img`, with a
//!   cpio appended that holds the `etc/<variant>-live-initramfs` stamp the installers look
//!   for); the tree's x86_64-efi grub modules; `live.json` (the deployment's kernel arguments,
//!   kernel release, commit). Its key has nothing of the config's `live/` directory, so a
//!   template edit does not pack the squashfs again.
//! - `live:<arch>` ([`LiveIsoRule`]): the ISO, made by xorriso from those files, the config's
//!   `live/` templates with the live kernel arguments substituted ([`crate::live_kargs`]),
//!   `<variant>/{igninfo,kargs,features}.json`, the 256 KiB Ignition embed area
//!   `images/ignition.img`, isolinux (BIOS, El Torito, hybrid MBR) and `images/efiboot.img`
//!   (UEFI, hybrid GPT) whose grub finds the ISO by its volume id; plus the PXE files under
//!   their artifact names. It reads its own ISO back as the installers do
//!   ([`crate::iso9660`]) and fails if an embed area is not where `kargs.json` says.
//!
//! The variant (`nestos` or `coreos`) names the metadata directory, the stamp and the
//! `<variant>.liveiso=` argument; [`variant_of`] takes it from the templates' marker.
//! Nothing here boots yet: the fixture's initramfs has no live module (docs/plans/live.md).

use std::path::{Path, PathBuf};

use nosa_commit::CommitRecord;
use nosa_engine::{InputSpec, Params, Rule, RunContext, RunError};
use serde::{Deserialize, Serialize};

use crate::cmd::Tool;
use crate::cpio::CpioWriter;
use crate::fsimg::make_vfat;
use crate::live_kargs::{self, KargsJson, LiveFile};
use crate::{ImageError, iso9660};

/// The Ignition embed area's size (`images/ignition.img`), as coreos-installer expects.
pub const IGNITION_AREA: u64 = 256 * 1024;

/// Where the installers find the live ISO's embedded Ignition config.
pub const IGNITION_IMG: &str = "images/ignition.img";

/// The UEFI El Torito image on the ISO.
pub const EFIBOOT_IMG: &str = "images/efiboot.img";

/// The PXE files' directory on the ISO.
pub const PXEBOOT_DIR: &str = "images/pxeboot";

/// The ISO's volume id: `<name>-<version>`, cut to ISO 9660's 32 characters.
pub fn volume_id(name: &str, version: &str) -> String {
    format!("{name}-{version}").chars().take(32).collect()
}

/// `coreos` when a template's marker is `COREOS_KARG_EMBED_AREA`, else `nestos`.
pub fn variant_of(files: &[LiveFile]) -> &'static str {
    let coreos = files
        .iter()
        .any(|(_, b)| b.windows(22).any(|w| w == b"COREOS_KARG_EMBED_AREA"));
    if coreos { "coreos" } else { "nestos" }
}

/// What `live.json` in a `live-pxe` output records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LiveRecord {
    /// The commit in the squashfs.
    pub commit: String,
    /// The deployment's BLS `options` (the metal image's kernel arguments).
    pub options: String,
    /// The kernel release.
    pub kernel_release: String,
}

/// The `live-pxe:<arch>` rule (see the module doc).
#[derive(Clone, Debug)]
pub struct LivePxeRule {
    /// Architecture (x86_64 only).
    pub arch: String,
    /// The stateroot.
    pub osname: String,
    /// The metal image's kernel arguments (the deployment's).
    pub kargs: Vec<String>,
    /// `nestos` or `coreos`.
    pub variant: String,
    /// image.yaml `squashfs-compression` (gzip, xz, zstd, lz4, lzo).
    pub compression: String,
    /// File times in the squashfs and the cpio archives (the build's SOURCE_DATE_EPOCH).
    pub timestamp: u64,
}

impl LivePxeRule {
    fn build(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let err = |e: ImageError| RunError::msg(e.to_string());
        if self.arch != "x86_64" {
            return Err(RunError::msg(format!(
                "live images for {} are not implemented (x86_64 only)",
                self.arch
            )));
        }
        if !["gzip", "xz", "zstd", "lz4", "lzo"].contains(&self.compression.as_str()) {
            return Err(RunError::msg(format!(
                "image.yaml squashfs-compression {:?}: use gzip, xz, zstd, lz4 or lzo",
                self.compression
            )));
        }
        let [dep] = ctx.deps else {
            return Err(RunError::msg(
                "live-pxe needs exactly one dependency (the ostree commit)",
            ));
        };
        let staged = ctx.stage_dep_kept(dep)?;
        let record: CommitRecord =
            serde_json::from_slice(&fs_err::read(staged.join("commit.json"))?)
                .map_err(|e| RunError::msg(format!("{}: commit.json: {e}", dep.id)))?;
        let expect = ctx.dep_tree(dep)?.size().saturating_mul(3);
        let (sysroot_dir, _) = ctx.memory_scratch("sysroot", expect)?;
        let sysroot = crate::deploy_sysroot(
            &staged.join("repo"),
            &record.checksum,
            &self.osname,
            &self.kargs,
            &sysroot_dir,
        )
        .map_err(err)?;
        let entry = sysroot
            .entries
            .first()
            .ok_or_else(|| RunError::msg("the deployment has no BLS entry"))?;
        let options = entry.options.clone();
        let modules = sysroot.tree_path("usr/lib/modules");
        let kver = crate::rule::only_kernel(&modules)?;
        let kdir = modules.join(&kver);
        fs_err::copy(kdir.join("vmlinuz"), ctx.out.join("vmlinuz"))?;
        let initramfs = kdir.join("initramfs.img");
        if !initramfs.is_file() {
            return Err(err(ImageError::missing(
                "the tree's initramfs (dracut's, at usr/lib/modules/<kver>/initramfs.img)",
                initramfs,
            )));
        }
        self.live_initrd(&initramfs, &ctx.out.join("initrd.img"))?;
        writeln!(ctx.log, "kernel {kver}; options: {options}")?;

        // The squashfs, then rootfs.img around it.
        let squashfs = ctx.scratch.join("root.squashfs");
        let t = self.timestamp.to_string();
        Tool::new("mksquashfs")
            .arg(&sysroot.root)
            .arg(&squashfs)
            .args(["-noappend", "-no-progress", "-quiet"])
            .args(["-comp", &self.compression])
            .args(["-all-time", &t, "-mkfs-time", &t])
            .run()
            .map_err(err)?;
        let size = fs_err::metadata(&squashfs)?.len();
        let out = fs_err::File::create(ctx.out.join("rootfs.img"))?;
        let mut cpio = CpioWriter::new(std::io::BufWriter::new(out), self.timestamp);
        cpio.file("root.squashfs", 0o644, size, fs_err::File::open(&squashfs)?)?;
        cpio.finish()?;
        fs_err::remove_file(&squashfs)?;
        writeln!(
            ctx.log,
            "root.squashfs: {size} bytes ({})",
            self.compression
        )?;

        // The tree's UEFI grub modules, for the ISO's EFI image.
        let grub = sysroot.tree_path("usr/lib/grub/x86_64-efi");
        if !grub.join("moddep.lst").is_file() {
            return Err(err(ImageError::missing(
                "grub x86_64-efi modules in the tree (package grub2-efi-x64-modules)",
                grub,
            )));
        }
        copy_dir(&grub, &ctx.out.join("grub/x86_64-efi"))?;
        let rec = LiveRecord {
            commit: record.checksum,
            options,
            kernel_release: kver,
        };
        let json = serde_json::to_vec_pretty(&rec).map_err(|e| RunError::msg(e.to_string()))?;
        fs_err::write(ctx.out.join("live.json"), json)?;
        Ok(())
    }

    /// The live initramfs: the tree's, zero-padded to 4 bytes, then a cpio (the kernel
    /// unpacks concatenated archives) with the `etc/<variant>-live-initramfs` stamp the
    /// installers look for and nosa's live root ([`LIVE_FILES`]).
    fn live_initrd(&self, tree_initramfs: &Path, dest: &Path) -> Result<(), RunError> {
        let mut bytes = fs_err::read(tree_initramfs)?;
        bytes.resize(bytes.len().div_ceil(4) * 4, 0);
        let mut cpio = CpioWriter::new(bytes, self.timestamp);
        // Directories the tree's initramfs may already have: the kernel keeps existing ones.
        for d in [
            "etc",
            "etc/systemd",
            "etc/systemd/system",
            "etc/systemd/system/initrd-root-fs.target.d",
        ] {
            cpio.dir(d)?;
        }
        let stamp = format!("etc/{}-live-initramfs", self.variant);
        cpio.file(&stamp, 0o644, 0, std::io::empty())?;
        for (path, mode, text) in LIVE_FILES {
            let text = text.replace("@VARIANT@", &self.variant);
            cpio.file(path, *mode, text.len() as u64, text.as_bytes())?;
        }
        let (bytes, _) = cpio.finish()?;
        fs_err::write(dest, bytes)?;
        Ok(())
    }
}

/// nosa's live root, added to the live initramfs (path, mode, text; `@VARIANT@` replaced):
/// `nosa-live-root` finds root.squashfs (in the initramfs after PXE, else in the ISO named by
/// `<variant>.liveiso=`) and mounts it; `sysroot.mount` puts a layer in memory over it; the
/// ostree deployment is passed to ostree-prepare-root when the command line has no `ostree=`;
/// `is-live-image` tells Ignition there is no root disk; the live system does not wait for a
/// boot partition; an embedded `config.ign` becomes Ignition's user config. The fixture's
/// initramfs has no live module of its own; a tree whose initramfs has one would need none of
/// this (docs/live.md).
pub const LIVE_FILES: &[(&str, u32, &str)] = &[
    (
        "usr/sbin/nosa-live-root",
        0o755,
        include_str!("live_initrd/nosa-live-root"),
    ),
    (
        "usr/bin/is-live-image",
        0o755,
        include_str!("live_initrd/is-live-image"),
    ),
    (
        "etc/systemd/system/nosa-live-root.service",
        0o644,
        include_str!("live_initrd/nosa-live-root.service"),
    ),
    (
        "etc/systemd/system/sysroot.mount",
        0o644,
        include_str!("live_initrd/sysroot.mount"),
    ),
    (
        "etc/systemd/system/nosa-live-fstab.service",
        0o644,
        include_str!("live_initrd/nosa-live-fstab.service"),
    ),
    (
        "etc/systemd/system/initrd-root-fs.target.d/nosa-live.conf",
        0o644,
        "[Unit]\nRequires=sysroot.mount\nWants=nosa-live-fstab.service\n",
    ),
];

impl Rule for LivePxeRule {
    fn kind(&self) -> &str {
        "live-pxe"
    }

    fn version(&self) -> u32 {
        // 2: nosa's live root in the initramfs. 3: live.json without the variant.
        3
    }

    fn params(&self, p: &mut Params) {
        p.add("arch", &self.arch);
        p.add("osname", &self.osname);
        p.add("kargs", &self.kargs);
        p.add("variant", &self.variant);
        p.add("compression", &self.compression);
        p.add("timestamp", &self.timestamp);
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        self.build(ctx)
    }
}

/// The host's isolinux files the ISO carries: (path on the ISO, path on the host).
pub const ISOLINUX_FILES: &[(&str, &str)] = &[
    ("isolinux/isolinux.bin", "/usr/lib/ISOLINUX/isolinux.bin"),
    (
        "isolinux/ldlinux.c32",
        "/usr/lib/syslinux/modules/bios/ldlinux.c32",
    ),
    (
        "isolinux/libcom32.c32",
        "/usr/lib/syslinux/modules/bios/libcom32.c32",
    ),
    (
        "isolinux/libutil.c32",
        "/usr/lib/syslinux/modules/bios/libutil.c32",
    ),
    (
        "isolinux/vesamenu.c32",
        "/usr/lib/syslinux/modules/bios/vesamenu.c32",
    ),
];

/// The hybrid MBR xorriso writes in front of the ISO (package isolinux).
pub const ISOHYBRID_MBR: &str = "/usr/lib/ISOLINUX/isohdpfx.bin";

/// The grub modules of the ISO's UEFI image besides the disk image's
/// ([`crate::GRUB_EFI_MODULES`]): reading the ISO, gzip'd files and the video modes.
const GRUB_LIVE_MODULES: &[&str] = &["iso9660", "gzio", "all_video"];

/// The `live:<arch>` rule (see the module doc).
#[derive(Clone, Debug)]
pub struct LiveIsoRule {
    /// Architecture.
    pub arch: String,
    /// The build name (`nestos`).
    pub name: String,
    /// The build version.
    pub version: String,
    /// `nestos` or `coreos`.
    pub variant: String,
    /// The config's `live/` directory, relative to the workdir.
    pub live_dir: String,
    /// The ISO's dates (the build's SOURCE_DATE_EPOCH).
    pub timestamp: u64,
}

/// The live artifacts' file names, as nestos-assembler writes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveNames {
    /// `<name>-<version>-live.<arch>.iso`.
    pub iso: String,
    /// `<name>-<version>-live-kernel-<arch>`.
    pub kernel: String,
    /// `<name>-<version>-live-initramfs.<arch>.img`.
    pub initramfs: String,
    /// `<name>-<version>-live-rootfs.<arch>.img`.
    pub rootfs: String,
}

impl LiveNames {
    /// The names for build `name`-`version` on `arch`.
    pub fn new(name: &str, version: &str, arch: &str) -> LiveNames {
        let base = format!("{name}-{version}");
        LiveNames {
            iso: format!("{base}-live.{arch}.iso"),
            kernel: format!("{base}-live-kernel-{arch}"),
            initramfs: format!("{base}-live-initramfs.{arch}.img"),
            rootfs: format!("{base}-live-rootfs.{arch}.img"),
        }
    }
}

impl LiveIsoRule {
    /// The artifacts' file names.
    pub fn names(&self) -> LiveNames {
        LiveNames::new(&self.name, &self.version, &self.arch)
    }

    fn build(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let err = |e: ImageError| RunError::msg(e.to_string());
        let [dep] = ctx.deps else {
            return Err(RunError::msg(
                "live needs exactly one dependency (its live-pxe node)",
            ));
        };
        let pxe = ctx.scratch.join("pxe");
        ctx.stage_dep_readonly(dep, &pxe)?;
        let rec: LiveRecord = serde_json::from_slice(&fs_err::read(pxe.join("live.json"))?)
            .map_err(|e| RunError::msg(format!("{}: live.json: {e}", dep.id)))?;
        let volid = volume_id(&self.name, &self.version);
        let prefix = format!("{}/", self.live_dir);
        let mut files: Vec<LiveFile> = Vec::new();
        for f in ctx.inputs {
            let Some(rel) = f.rel.strip_prefix(&prefix) else {
                continue;
            };
            // The reference configs' developer notes are not part of the ISO.
            if rel.starts_with("README") || f.symlink {
                continue;
            }
            files.push((rel.to_string(), fs_err::read(&f.abs)?));
        }
        let kargs = live_kargs::live_kargs(&rec.options, &self.variant, &volid);
        let (files, kargs_json) = live_kargs::template(&files, &kargs)
            .map_err(|e| RunError::msg(format!("{}: {e}", self.live_dir)))?;
        let Some(kargs_json) = kargs_json else {
            return Err(RunError::msg(format!(
                "{}: no template has a kernel-argument embed area: isolinux/isolinux.cfg and \
                 EFI/<vendor>/grub.cfg need `@@KERNEL-ARGS@@` and a `# {}_KARG_EMBED_AREA` line",
                self.live_dir,
                self.variant.to_uppercase()
            )));
        };
        let vendor =
            efi_vendor(&files).map_err(|e| RunError::msg(format!("{}: {e}", self.live_dir)))?;
        if !files.iter().any(|(p, _)| p == "isolinux/isolinux.cfg") {
            return Err(RunError::msg(format!(
                "{}: isolinux/isolinux.cfg is missing: the ISO boots BIOS machines with isolinux",
                self.live_dir
            )));
        }

        // The ISO's tree.
        let root = ctx.scratch.join("iso");
        for (rel, bytes) in &files {
            write_new(&root.join(rel), bytes)?;
        }
        let meta = root.join(&self.variant);
        write_new(
            &meta.join("igninfo.json"),
            &pretty(&serde_json::json!({ "file": IGNITION_IMG }))?,
        )?;
        write_new(&meta.join("kargs.json"), &pretty(&kargs_json)?)?;
        // No installer in the fixture yet: no installer-config, no initrd network config.
        write_new(
            &meta.join("features.json"),
            &pretty(&serde_json::json!({
                "installer-config": false,
                "live-initrd-network": false,
            }))?,
        )?;
        write_new(&root.join(IGNITION_IMG), &vec![0u8; IGNITION_AREA as usize])?;
        let pxe_dir = root.join(PXEBOOT_DIR);
        fs_err::create_dir_all(&pxe_dir)?;
        for f in ["vmlinuz", "initrd.img", "rootfs.img"] {
            link_or_copy(&pxe.join(f), &pxe_dir.join(f))?;
        }
        for (dest, host) in ISOLINUX_FILES {
            let host = Path::new(host);
            if !host.is_file() {
                return Err(err(ImageError::missing(
                    "isolinux (Debian packages isolinux and syslinux-common)",
                    host,
                )));
            }
            fs_err::copy(host, root.join(dest))?;
        }
        let efi = grub_live_efi(&pxe.join("grub/x86_64-efi"), &volid, &vendor, &ctx.scratch)
            .map_err(err)?;
        efiboot_img(&efi, &volid, &root.join(EFIBOOT_IMG), &ctx.scratch).map_err(err)?;

        let names = self.names();
        let iso = ctx.out.join(&names.iso);
        xorriso(&root, &iso, &volid, self.timestamp).map_err(err)?;
        check_iso(&iso, &self.variant, &kargs_json, &volid).map_err(err)?;
        writeln!(
            ctx.log,
            "wrote {} (volume {volid}, kargs: {})",
            names.iso, kargs_json.default
        )?;
        for (f, name) in [
            ("vmlinuz", &names.kernel),
            ("initrd.img", &names.initramfs),
            ("rootfs.img", &names.rootfs),
        ] {
            link_or_copy(&pxe.join(f), &ctx.out.join(name))?;
        }
        Ok(())
    }
}

/// `v` as pretty JSON with a final newline (the metadata files' form).
fn pretty<T: Serialize>(v: &T) -> Result<Vec<u8>, RunError> {
    let mut b = serde_json::to_vec_pretty(v).map_err(|e| RunError::msg(e.to_string()))?;
    b.push(b'\n');
    Ok(b)
}

impl Rule for LiveIsoRule {
    fn kind(&self) -> &str {
        "live"
    }

    fn version(&self) -> u32 {
        // 2: the UEFI grub has the disk image's modules too.
        2
    }

    fn params(&self, p: &mut Params) {
        p.add("arch", &self.arch);
        p.add("name", &self.name);
        p.add("version", &self.version);
        p.add("variant", &self.variant);
        p.add("timestamp", &self.timestamp);
        // The host's boot payloads are copied into the ISO: their bytes are part of it.
        p.add("host-boot-files", host_boot_files());
    }

    fn inputs(&self) -> Vec<InputSpec> {
        vec![InputSpec::Path(self.live_dir.clone())]
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        self.build(ctx)
    }
}

/// The digests of the host's boot payloads ([`ISOLINUX_FILES`], [`ISOHYBRID_MBR`]), read once
/// per process (keys are computed on every plan; a package upgrade is a new process).
fn host_boot_files() -> &'static Vec<(String, String)> {
    static DIGESTS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    DIGESTS.get_or_init(|| {
        ISOLINUX_FILES
            .iter()
            .map(|(_, h)| *h)
            .chain([ISOHYBRID_MBR])
            .map(|h| {
                let d = nosa_cache::hash_file(Path::new(h))
                    .map(|d| d.to_hex())
                    .unwrap_or_else(|_| "missing".into());
                (h.to_string(), d)
            })
            .collect()
    })
}

/// The `live-custom:<arch>` rule: the build's live ISO and PXE initramfs with the Ignition
/// config `[live] live-ignition` names embedded, as `iso customize --live-ignition` and
/// `pxe customize --live-ignition` embed it (a cpio holding `config.ign`: in the ISO's
/// `images/ignition.img` area, appended to the initramfs). Its key covers the config file,
/// so changing only the config reruns only this node.
#[derive(Clone, Debug)]
pub struct LiveCustomRule {
    /// Architecture.
    pub arch: String,
    /// The build name.
    pub name: String,
    /// The build version.
    pub version: String,
    /// The Ignition config, relative to the workdir.
    pub live_ignition: String,
}

impl LiveCustomRule {
    /// `<name>-<version>-live-custom.<arch>.iso` and
    /// `<name>-<version>-live-initramfs-custom.<arch>.img`.
    pub fn file_names(&self) -> (String, String) {
        let base = format!("{}-{}", self.name, self.version);
        (
            format!("{base}-live-custom.{}.iso", self.arch),
            format!("{base}-live-initramfs-custom.{}.img", self.arch),
        )
    }

    fn build(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let err = |e: ImageError| RunError::msg(e.to_string());
        let [dep] = ctx.deps else {
            return Err(RunError::msg(
                "live-custom needs exactly one dependency (its live node)",
            ));
        };
        let input = ctx
            .inputs
            .iter()
            .find(|f| f.rel == self.live_ignition)
            .ok_or_else(|| {
                RunError::msg(format!("{}: not among the inputs", self.live_ignition))
            })?;
        let config = fs_err::read(&input.abs)?;
        check_ignition(&config).map_err(|why| {
            RunError::msg(format!(
                "{} ([live] live-ignition): {why}: it must be an Ignition config, a JSON \
                 object with ignition.version",
                self.live_ignition
            ))
        })?;
        let live = ctx.scratch.join("live");
        ctx.stage_dep_readonly(dep, &live)?;
        let iso_names = LiveNames::new(&self.name, &self.version, &self.arch);
        let (iso, initramfs) = self.file_names();
        let out_iso = ctx.out.join(&iso);
        fs_err::copy(live.join(&iso_names.iso), &out_iso)?;
        let mut perms = fs_err::metadata(&out_iso)?.permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
        fs_err::set_permissions(&out_iso, perms)?;
        embed_ignition(&out_iso, &config).map_err(err)?;
        let mut bytes = fs_err::read(live.join(&iso_names.initramfs))?;
        bytes.extend(ignition_cpio(&config));
        fs_err::write(ctx.out.join(&initramfs), bytes)?;
        writeln!(
            ctx.log,
            "embedded {} into {iso} and {initramfs}",
            self.live_ignition
        )?;
        Ok(())
    }
}

impl Rule for LiveCustomRule {
    fn kind(&self) -> &str {
        "live-custom"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self, p: &mut Params) {
        p.add("arch", &self.arch);
        p.add("name", &self.name);
        p.add("version", &self.version);
        p.add("live-ignition", &self.live_ignition);
    }

    fn inputs(&self) -> Vec<InputSpec> {
        vec![InputSpec::Path(self.live_ignition.clone())]
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        self.build(ctx)
    }
}

/// Why `config` is not an Ignition config: not JSON, not an object, or no `ignition.version`.
fn check_ignition(config: &[u8]) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_slice(config).map_err(|e| e.to_string())?;
    match v.pointer("/ignition/version") {
        Some(serde_json::Value::String(_)) => Ok(()),
        _ => Err("no ignition.version".into()),
    }
}

/// The one `EFI/<vendor>/` directory of the templates that holds a grub.cfg.
fn efi_vendor(files: &[LiveFile]) -> Result<String, String> {
    let vendors: Vec<&str> = files
        .iter()
        .filter_map(|(p, _)| p.strip_prefix("EFI/")?.strip_suffix("/grub.cfg"))
        .filter(|v| !v.contains('/'))
        .collect();
    match vendors.as_slice() {
        [v] => Ok(v.to_string()),
        [] => Err("no EFI/<vendor>/grub.cfg: the ISO's UEFI grub reads it".into()),
        many => Err(format!(
            "several EFI/<vendor>/grub.cfg ({}): keep one",
            many.join(", ")
        )),
    }
}

/// grub's x86_64-efi image for the ISO, from the modules in `modules`: its embedded config
/// finds the volume labelled `volid` and reads `EFI/<vendor>/grub.cfg` there.
fn grub_live_efi(
    modules: &Path,
    volid: &str,
    vendor: &str,
    work: &Path,
) -> Result<Vec<u8>, ImageError> {
    let cfg = work.join("grub-live-embedded.cfg");
    fs_err::write(
        &cfg,
        format!(
            "search --no-floppy --set=root --label '{volid}'\nset prefix=($root)/EFI/{vendor}\nconfigfile $prefix/grub.cfg\n"
        ),
    )?;
    let out = work.join("grub-live.efi");
    Tool::new("grub-mkimage")
        .args(["-O", "x86_64-efi", "-p", &format!("/EFI/{vendor}")])
        .arg("-d")
        .arg(modules)
        .arg("-c")
        .arg(&cfg)
        .arg("-o")
        .arg(&out)
        .args(crate::GRUB_EFI_MODULES)
        .args(GRUB_LIVE_MODULES)
        .run()?;
    Ok(fs_err::read(&out)?)
}

/// `images/efiboot.img`: a FAT image (label EFI-SYSTEM) holding `EFI/BOOT/BOOTX64.EFI`.
fn efiboot_img(efi: &[u8], volid: &str, dest: &Path, work: &Path) -> Result<(), ImageError> {
    let mib = 1u64 << 20;
    let size = (efi.len() as u64 + mib).div_ceil(mib) * mib;
    let serial = u32::from_le_bytes(
        blake3::hash(volid.as_bytes()).as_bytes()[..4]
            .try_into()
            .unwrap(),
    );
    make_vfat(dest, size, 512, "EFI-SYSTEM", serial)?;
    let staged = work.join("efiboot");
    crate::bootloader::stage_esp(efi, &staged)?;
    crate::bootloader::fill_esp(&staged, dest)
}

/// xorriso's mkisofs emulation: Rock Ridge and Joliet beside the primary tree, isolinux for
/// BIOS with the hybrid MBR, efiboot.img for UEFI with the hybrid GPT; dates from `epoch`.
fn xorriso(root: &Path, iso: &Path, volid: &str, epoch: u64) -> Result<(), ImageError> {
    if !Path::new(ISOHYBRID_MBR).is_file() {
        return Err(ImageError::missing(
            "isolinux's isohdpfx.bin (Debian package isolinux)",
            ISOHYBRID_MBR,
        ));
    }
    Tool::new("xorriso")
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .args(["-as", "mkisofs", "-quiet", "-volid", volid])
        .args(["-rational-rock", "-J", "-joliet-long"])
        .args(["-eltorito-boot", "isolinux/isolinux.bin"])
        .args(["-eltorito-catalog", "isolinux/boot.cat"])
        .args(["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"])
        .args(["-isohybrid-mbr", ISOHYBRID_MBR])
        .args(["-eltorito-alt-boot", "-e", EFIBOOT_IMG, "-no-emul-boot"])
        .arg("-isohybrid-gpt-basdat")
        .arg("-o")
        .arg(iso)
        .arg(root)
        .run()?;
    Ok(())
}

/// Reads the ISO back as the installers do: the metadata files and the PXE files are where
/// they look, and each embed area holds the default arguments, the end character and padding.
pub fn check_iso(
    iso: &Path,
    variant: &str,
    kargs: &KargsJson,
    volid: &str,
) -> Result<(), ImageError> {
    let tree = iso9660::read_tree(iso)?;
    let bad = |what: String| ImageError::msg(format!("{}: {what}", iso.display()));
    if tree.volume_id != volid {
        return Err(bad(format!(
            "volume id {:?}, expected {volid:?}",
            tree.volume_id
        )));
    }
    for f in ["igninfo.json", "kargs.json", "features.json"] {
        let path = format!("{variant}/{f}");
        // ISO 9660 level 1: `kargs.json` is `KARGS.JSO`, as the installers spell it.
        let short = shorten(&path);
        if tree.get(&short).is_none() {
            return Err(bad(format!("{short} is missing")));
        }
    }
    let ign = tree
        .get(IGNITION_IMG)
        .ok_or_else(|| bad(format!("{IGNITION_IMG} is missing")))?;
    if ign.size != IGNITION_AREA {
        return Err(bad(format!("{IGNITION_IMG} is {} bytes", ign.size)));
    }
    for f in ["vmlinuz", "initrd.img", "rootfs.img"] {
        let p = format!("{PXEBOOT_DIR}/{f}");
        if tree.get(&p).is_none() {
            return Err(bad(format!("{p} is missing")));
        }
    }
    let mut file = fs_err::File::open(iso)?;
    for f in &kargs.files {
        let e = tree.get(&f.path).ok_or_else(|| {
            bad(format!(
                "{} (kargs.json) is not in the primary tree",
                f.path
            ))
        })?;
        let start = e.offset() + f.offset as u64;
        let mut area = vec![0u8; kargs.size];
        {
            use std::io::{Read, Seek, SeekFrom};
            file.seek(SeekFrom::Start(start))?;
            file.read_exact(&mut area)
                .map_err(|_| bad(format!("{}: the embed area runs past the end", f.path)))?;
        }
        let want = format!("{}{}", kargs.default, f.end);
        let ok = area.starts_with(want.as_bytes())
            && area[want.len()..].iter().all(|&b| b == f.pad as u8);
        if !ok {
            return Err(bad(format!(
                "{}: the embed area at {start} does not hold the default arguments and padding",
                f.path
            )));
        }
    }
    Ok(())
}

/// An Ignition config as the installers embed it: a newc cpio holding `config.ign` (not
/// compressed; the kernel unpacks it either way), which the live initramfs finds at `/`.
pub fn ignition_cpio(config: &[u8]) -> Vec<u8> {
    let mut cpio = CpioWriter::new(Vec::new(), 0);
    cpio.file("config.ign", 0o644, config.len() as u64, config)
        .expect("writing to memory");
    cpio.finish().expect("writing to memory").0
}

/// Writes `config` into the live ISO `iso`'s Ignition embed area (`images/ignition.img`,
/// found in the primary tree as `iso ignition embed` finds it), zero-filling the rest.
pub fn embed_ignition(iso: &Path, config: &[u8]) -> Result<(), ImageError> {
    use std::io::{Seek, SeekFrom, Write};
    let tree = iso9660::read_tree(iso)?;
    let area = tree.get(IGNITION_IMG).ok_or_else(|| {
        ImageError::msg(format!(
            "{}: no {IGNITION_IMG}: not a live ISO",
            iso.display()
        ))
    })?;
    let mut bytes = ignition_cpio(config);
    if bytes.len() as u64 > area.size {
        return Err(ImageError::msg(format!(
            "{}: the Ignition config needs {} bytes, the embed area has {}",
            iso.display(),
            bytes.len(),
            area.size
        )));
    }
    bytes.resize(area.size as usize, 0);
    let mut f = fs_err::OpenOptions::new().write(true).open(iso)?;
    f.seek(SeekFrom::Start(area.offset()))?;
    f.write_all(&bytes)?;
    Ok(())
}

/// A path as an ISO 9660 level-1 primary tree stores it: 8.3 names.
fn shorten(path: &str) -> String {
    path.split('/')
        .map(|c| match c.rsplit_once('.') {
            Some((b, e)) => format!("{}.{}", &b[..b.len().min(8)], &e[..e.len().min(3)]),
            None => c[..c.len().min(8)].to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    if let Some(p) = path.parent() {
        fs_err::create_dir_all(p)?;
    }
    fs_err::write(path, bytes)?;
    Ok(())
}

/// A hardlink (same file system) or else a copy.
fn link_or_copy(from: &Path, to: &Path) -> Result<(), RunError> {
    if fs_err::hard_link(from, to).is_err() {
        fs_err::copy(from, to)?;
    }
    Ok(())
}

/// Copies the directory `from` to `to`: files and directories (grub's module directory).
fn copy_dir(from: &Path, to: &Path) -> Result<(), RunError> {
    for e in walkdir::WalkDir::new(from).sort_by_file_name() {
        let e = e.map_err(|e| RunError::msg(format!("{}: {e}", from.display())))?;
        let rel = e.path().strip_prefix(from).expect("walked under from");
        let dest: PathBuf = to.join(rel);
        if e.file_type().is_dir() {
            fs_err::create_dir_all(&dest)?;
        } else if e.file_type().is_file() {
            fs_err::copy(e.path(), &dest)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_volume_id_and_variant() {
        let r = LiveIsoRule {
            arch: "x86_64".into(),
            name: "nestos".into(),
            version: "24.03.20261207.0".into(),
            variant: "nestos".into(),
            live_dir: "config/live".into(),
            timestamp: 0,
        };
        let n = r.names();
        assert_eq!(n.iso, "nestos-24.03.20261207.0-live.x86_64.iso");
        assert_eq!(n.kernel, "nestos-24.03.20261207.0-live-kernel-x86_64");
        assert_eq!(
            n.initramfs,
            "nestos-24.03.20261207.0-live-initramfs.x86_64.img"
        );
        assert_eq!(n.rootfs, "nestos-24.03.20261207.0-live-rootfs.x86_64.img");
        assert_eq!(
            volume_id("nestos", "24.03.20261207.0"),
            "nestos-24.03.20261207.0"
        );
        assert_eq!(
            volume_id("a-very-long-os-name", "2026120712345678.0").len(),
            32
        );
        let f = |b: &str| vec![("isolinux/isolinux.cfg".to_string(), b.as_bytes().to_vec())];
        assert_eq!(variant_of(&f("#### COREOS_KARG_EMBED_AREA\n")), "coreos");
        assert_eq!(variant_of(&f("#### NESTOS_KARG_EMBED_AREA\n")), "nestos");
    }

    #[test]
    fn level_one_names() {
        assert_eq!(shorten("coreos/features.json"), "coreos/features.jso");
        assert_eq!(shorten("nestos/igninfo.json"), "nestos/igninfo.jso");
        assert_eq!(shorten("EFI/openEuler/grub.cfg"), "EFI/openEule/grub.cfg");
    }

    #[test]
    fn one_efi_vendor() {
        let f = |p: &str| (p.to_string(), Vec::new());
        assert_eq!(
            efi_vendor(&[f("EFI/nestos/grub.cfg"), f("isolinux/isolinux.cfg")]).unwrap(),
            "nestos"
        );
        assert!(
            efi_vendor(&[f("isolinux/isolinux.cfg")])
                .unwrap_err()
                .contains("no EFI")
        );
        assert!(
            efi_vendor(&[f("EFI/a/grub.cfg"), f("EFI/b/grub.cfg")])
                .unwrap_err()
                .contains("a, b")
        );
    }
}
