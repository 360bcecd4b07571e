//! `ImageRule`: the engine node `image:<arch>:<format>` (qemu, metal, metal4k). Its single
//! dependency is the ostree commit node (`repo/` + `commit.json`); its parameters are the
//! image.yaml values it uses. Output: the image under nestos-assembler's file name, plus
//! `image.json` (layout, GUIDs, the deployed commit).

use std::path::Path;

use nosa_commit::CommitRecord;
use nosa_engine::{Params, Rule, RunContext, RunError};
use serde::{Deserialize, Serialize};

use crate::deploy::BASE_KARGS;
use crate::disk::{DiskInfo, FsInfo, FsLayout};

/// The disk image formats this rule builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// qcow2, 512-byte blocks, `ignition.platform.id=qemu`.
    Qemu,
    /// raw, 512-byte blocks, `ignition.platform.id=metal`.
    Metal,
    /// raw, 4096-byte blocks, `ignition.platform.id=metal`.
    Metal4k,
    /// qcow2, 512-byte blocks, `ignition.platform.id=openstack`.
    Openstack,
}

impl ImageFormat {
    /// The name in node ids and file names.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Qemu => "qemu",
            ImageFormat::Metal => "metal",
            ImageFormat::Metal4k => "metal4k",
            ImageFormat::Openstack => "openstack",
        }
    }

    /// Parses `qemu`, `metal`, `metal4k`.
    pub fn parse(s: &str) -> Option<ImageFormat> {
        match s {
            "qemu" => Some(ImageFormat::Qemu),
            "metal" => Some(ImageFormat::Metal),
            "metal4k" => Some(ImageFormat::Metal4k),
            "openstack" => Some(ImageFormat::Openstack),
            _ => None,
        }
    }

    /// Logical block size.
    pub fn sector_size(self) -> u64 {
        match self {
            ImageFormat::Metal4k => 4096,
            _ => 512,
        }
    }

    /// The `ignition.platform.id` karg value.
    pub fn platform(self) -> &'static str {
        match self {
            ImageFormat::Qemu => "qemu",
            ImageFormat::Openstack => "openstack",
            _ => "metal",
        }
    }

    /// File extension.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Qemu | ImageFormat::Openstack => "qcow2",
            _ => "raw",
        }
    }
}

/// The `image-fs:<arch>:<platform>` rule: the commit deployed with the platform's kernel
/// arguments, and the partition contents made from it (see [`crate::prepare_filesystems`]).
/// Every image of the platform is assembled from its output: `metal` and `metal4k` share one.
#[derive(Clone, Debug)]
pub struct ImageFsRule {
    /// Architecture (`x86_64`; only x86_64 has a layout here).
    pub arch: String,
    /// `qemu`, `metal` or `openstack` (`ignition.platform.id`).
    pub platform: String,
    /// The stateroot (`osname`), image.yaml's `osname` or `nestos`.
    pub osname: String,
    /// Root partition size in MiB (image.yaml `size`, in GiB, times 1024, minus the other
    /// partitions, or a fixed value).
    pub root_size_mib: u64,
    /// image.yaml `extra-kargs`.
    pub extra_kargs: Vec<String>,
    /// image.yaml `rootfs`: `ext4` or `xfs`.
    pub rootfs: String,
    /// Filesystem timestamps (the build's SOURCE_DATE_EPOCH).
    pub timestamp: u64,
}

/// What `sysroot.json` in an `image-fs` output records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SysrootRecord {
    /// The deployed commit.
    pub commit: String,
    /// Kernel arguments given to the deployment.
    pub kargs: Vec<String>,
    /// The stateroot.
    pub osname: String,
    /// The root filesystem type.
    pub rootfs: String,
    /// The deployment's `/usr/lib/os-release`.
    pub os_release: String,
    /// The deployment's kernel release (the kernel is in the output as `vmlinuz`).
    pub kernel_release: String,
}

impl ImageFsRule {
    /// A rule with nestos-assembler's defaults: osname `nestos`, ext4 root of 2048 MiB, no
    /// extra kargs, timestamp 0.
    pub fn new(arch: &str, platform: &str) -> ImageFsRule {
        ImageFsRule {
            arch: arch.into(),
            platform: platform.into(),
            osname: "nestos".into(),
            root_size_mib: 2048,
            extra_kargs: Vec::new(),
            rootfs: "ext4".into(),
            timestamp: 0,
        }
    }

    /// `image-fs:<arch>:<platform>`.
    pub fn node_id(&self) -> String {
        format!("image-fs:{}:{}", self.arch, self.platform)
    }

    /// The kernel arguments: the base ones, the platform, then image.yaml's extra ones.
    pub fn kargs(&self) -> Vec<String> {
        let mut k: Vec<String> = BASE_KARGS.iter().map(|s| s.to_string()).collect();
        k.push(format!("ignition.platform.id={}", self.platform));
        k.extend(self.extra_kargs.iter().cloned());
        k
    }

    fn build(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let err = |e: crate::ImageError| RunError::msg(e.to_string());
        if self.arch != "x86_64" {
            return Err(RunError::msg(format!(
                "disk images for {} are not implemented (x86_64 only)",
                self.arch
            )));
        }
        if !matches!(self.rootfs.as_str(), "ext4" | "xfs") {
            return Err(RunError::msg(format!(
                "image.yaml rootfs {:?}: only ext4 and xfs are supported",
                self.rootfs
            )));
        }
        let [dep] = ctx.deps else {
            return Err(RunError::msg(
                "image-fs needs exactly one dependency (the ostree commit)",
            ));
        };
        // Read-only hardlinks: `ostree pull-local` only reads the repository.
        // (Kept between runs and synced: a new commit costs its new objects.)
        let staged = ctx.stage_dep_kept(dep)?;
        let record: CommitRecord =
            serde_json::from_slice(&fs_err::read(staged.join("commit.json"))?)
                .map_err(|e| RunError::msg(format!("{}: commit.json: {e}", dep.id)))?;
        let kargs = self.kargs();
        // The sysroot is thousands of files that live until the root filesystem is made from
        // them: in memory when it fits (an archive repository's objects are compressed; the
        // deployment hardlinks the bare repository's, so about three times the archive).
        let expect = ctx.dep_tree(dep)?.size().saturating_mul(3);
        let (sysroot_dir, in_memory) = ctx.memory_scratch("sysroot", expect)?;
        let sysroot = crate::deploy_sysroot(
            &staged.join("repo"),
            &record.checksum,
            &self.osname,
            &kargs,
            &sysroot_dir,
        )
        .map_err(err)?;
        writeln!(
            ctx.log,
            "deployed {} ({} BLS entries) into {}",
            sysroot.checksum,
            sysroot.entries.len(),
            if in_memory { "memory" } else { "scratch" }
        )?;
        let os_release = fs_err::read_to_string(sysroot.tree_path("usr/lib/os-release"))
            .map_err(|e| RunError::msg(format!("the deployment has no usr/lib/os-release: {e}")))?;
        let kernel_release = copy_kernel(&sysroot, &ctx.out.join("vmlinuz"))?;
        let layout = FsLayout {
            root_size: self.root_size_mib << 20,
            seed: format!("{}:{}", record.checksum, self.platform),
            timestamp: self.timestamp,
            root_fs: self.rootfs.clone(),
        };
        // grub's images depend on the tree's grub modules and the host's grub-mkimage only:
        // the last ones are used again when those are unchanged (speed only).
        let grub_inputs = crate::grub_inputs(&sysroot).map_err(err)?;
        let grub = previous_grub(ctx, &grub_inputs);
        writeln!(
            ctx.log,
            "grub images: {}",
            if grub.is_some() {
                "the last run's (their inputs are unchanged)"
            } else {
                "made"
            }
        )?;
        let (work, _) = ctx.memory_scratch("filesystems", expect)?;
        crate::prepare_filesystems(&sysroot, &layout, &ctx.out, &work, grub).map_err(err)?;
        let core = fs_err::read(ctx.out.join(crate::disk::prepared::GRUB_CORE))?;
        let efi = fs_err::read(
            ctx.out
                .join(crate::disk::prepared::ESP_DIR)
                .join(crate::GRUB_EFI_PATH),
        )?;
        ctx.set_memo_files(&[
            (GRUB_MEMO_INPUTS, &grub_inputs),
            (GRUB_MEMO_CORE, &core),
            (GRUB_MEMO_EFI, &efi),
        ])?;
        let rec = SysrootRecord {
            commit: record.checksum,
            kargs,
            osname: self.osname.clone(),
            rootfs: self.rootfs.clone(),
            os_release,
            kernel_release,
        };
        let json = serde_json::to_vec_pretty(&rec).map_err(|e| RunError::msg(e.to_string()))?;
        fs_err::write(ctx.out.join("sysroot.json"), json)?;
        Ok(())
    }
}

impl Rule for ImageFsRule {
    fn kind(&self) -> &str {
        "image-fs"
    }

    fn version(&self) -> u32 {
        // 2: partition images packed (crate::sparse). 3: UEFI boots grub (x86_64-efi).
        3
    }

    fn params(&self, p: &mut Params) {
        p.add("arch", &self.arch);
        p.add("platform", &self.platform);
        p.add("osname", &self.osname);
        p.add("root-size-mib", &self.root_size_mib);
        p.add("extra-kargs", &self.extra_kargs);
        p.add("rootfs", &self.rootfs);
        p.add("timestamp", &self.timestamp);
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        self.build(ctx)
    }
}

/// The `image:<arch>:<format>` rule: a disk assembled from its platform's `image-fs` node.
#[derive(Clone, Debug)]
pub struct ImageRule {
    /// Architecture.
    pub arch: String,
    /// The format.
    pub format: ImageFormat,
    /// The build name (`nestos`), first part of the file name.
    pub name: String,
    /// The build version.
    pub version: String,
}

/// What `image.json` records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image file name in the output.
    pub file: String,
    /// The format.
    pub format: ImageFormat,
    /// The deployed commit.
    pub commit: String,
    /// Kernel arguments given to the deployment.
    pub kargs: Vec<String>,
    /// The disk.
    pub disk: DiskInfo,
    /// The stateroot the commit is deployed in.
    pub osname: String,
    /// The root filesystem type (`ext4`, `xfs`).
    pub rootfs: String,
    /// The deployment's `/usr/lib/os-release` (what a booted image must show).
    pub os_release: String,
    /// The deployment's kernel release; the kernel is in the output as `vmlinuz` (the KVM
    /// probe of `nosa run` and `kola` boots it).
    pub kernel_release: String,
}

impl ImageRule {
    /// The rule for `format`.
    pub fn new(arch: &str, format: ImageFormat, name: &str, version: &str) -> ImageRule {
        ImageRule {
            arch: arch.into(),
            format,
            name: name.into(),
            version: version.into(),
        }
    }

    /// `image:<arch>:<format>`.
    pub fn node_id(&self) -> String {
        format!("image:{}:{}", self.arch, self.format.name())
    }

    /// The id of the `image-fs` node it is assembled from.
    pub fn fs_node_id(&self) -> String {
        format!("image-fs:{}:{}", self.arch, self.format.platform())
    }

    /// `<name>-<version>-<format>.<arch>.<ext>`, as nestos-assembler names it.
    pub fn file_name(&self) -> String {
        format!(
            "{}-{}-{}.{}.{}",
            self.name,
            self.version,
            self.format.name(),
            self.arch,
            self.format.extension()
        )
    }

    fn build(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let err = |e: crate::ImageError| RunError::msg(e.to_string());
        let [dep] = ctx.deps else {
            return Err(RunError::msg(
                "image needs exactly one dependency (its image-fs node)",
            ));
        };
        // Hardlinks to the store's read-only blobs: the partition images are only read.
        let fs_dir = ctx.scratch.join("fs");
        ctx.stage_dep_readonly(dep, &fs_dir)?;
        let read = |name: &str| -> Result<Vec<u8>, RunError> {
            fs_err::read(fs_dir.join(name)).map_err(|e| RunError::msg(format!("{}: {e}", dep.id)))
        };
        let sys: SysrootRecord = serde_json::from_slice(&read("sysroot.json")?)
            .map_err(|e| RunError::msg(format!("{}: sysroot.json: {e}", dep.id)))?;
        let info: FsInfo = serde_json::from_slice(&read(crate::disk::prepared::INFO)?)
            .map_err(|e| RunError::msg(format!("{}: filesystems.json: {e}", dep.id)))?;
        let file = self.file_name();
        let qcow2 = self.format.extension() == "qcow2";
        let raw = if qcow2 {
            // Only the qcow2 writer reads it back: in memory when its data fits.
            let data = ctx.dep_tree(dep)?.size();
            ctx.memory_scratch("disk", data)?.0.join("disk.raw")
        } else {
            ctx.out.join(&file)
        };
        let seed = format!("{}:{}", sys.commit, self.format.name());
        let disk = crate::assemble_disk(&fs_dir, &info, self.format.sector_size(), &seed, &raw)
            .map_err(err)?;
        if qcow2 {
            crate::raw_to_qcow2(&raw, &ctx.out.join(&file)).map_err(err)?;
            fs_err::remove_file(&raw)?;
        }
        writeln!(ctx.log, "wrote {file} ({} bytes virtual)", disk.size)?;
        fs_err::copy(fs_dir.join("vmlinuz"), ctx.out.join("vmlinuz"))?;
        let rec = ImageRecord {
            file,
            format: self.format,
            commit: sys.commit,
            kargs: sys.kargs,
            disk,
            osname: sys.osname,
            rootfs: sys.rootfs,
            os_release: sys.os_release,
            kernel_release: sys.kernel_release,
        };
        let json = serde_json::to_vec_pretty(&rec).map_err(|e| RunError::msg(e.to_string()))?;
        fs_err::write(ctx.out.join("image.json"), json)?;
        Ok(())
    }
}

impl Rule for ImageRule {
    fn kind(&self) -> &str {
        "image"
    }

    fn version(&self) -> u32 {
        // 5: reads packed partition images. 6: writes qcow2 itself (crate::qcow2).
        6
    }

    fn params(&self, p: &mut Params) {
        p.add("arch", &self.arch);
        p.add("format", self.format.name());
        p.add("name", &self.name);
        p.add("version", &self.version);
    }

    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        self.build(ctx)
    }
}

/// The memo's files: the digest of grub's inputs and the images made from them.
const GRUB_MEMO_INPUTS: &str = "grub.inputs";
const GRUB_MEMO_CORE: &str = "grub-core.img";
const GRUB_MEMO_EFI: &str = "grubx64.efi";

/// The images the node's last run made, if its memo is still in the store and they were made
/// from inputs with digest `inputs`.
fn previous_grub(ctx: &RunContext<'_>, inputs: &[u8; 32]) -> Option<crate::GrubImages> {
    let (tree, recorded) = ctx.previous_memo_file(GRUB_MEMO_INPUTS)?;
    if recorded != inputs {
        return None;
    }
    let read = |name: &str| fs_err::read(ctx.store().blob_path(&tree.file(name)?)).ok();
    Some(crate::GrubImages {
        bios_core: read(GRUB_MEMO_CORE)?,
        efi: read(GRUB_MEMO_EFI)?,
    })
}

/// Copies the deployment's kernel (`usr/lib/modules/<kver>/vmlinuz`, the only one) to `to`;
/// returns the kernel release.
fn copy_kernel(sysroot: &crate::Sysroot, to: &Path) -> Result<String, RunError> {
    let modules = sysroot.tree_path("usr/lib/modules");
    let kver = only_kernel(&modules)?;
    fs_err::copy(modules.join(&kver).join("vmlinuz"), to)?;
    Ok(kver)
}

/// The release of the one kernel under `modules` (a tree's `usr/lib/modules`): the one
/// directory that has a `vmlinuz`.
pub(crate) fn only_kernel(modules: &Path) -> Result<String, RunError> {
    let mut found = Vec::new();
    for e in fs_err::read_dir(modules)? {
        let e = e?;
        if e.path().join("vmlinuz").is_file() {
            found.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    found.sort();
    match found.as_slice() {
        [kver] => Ok(kver.clone()),
        _ => Err(RunError::msg(format!(
            "expected one kernel in the deployment's usr/lib/modules, found {found:?}"
        ))),
    }
}

/// Reads `image.json` from an image node's output directory.
pub fn read_image_record(out: &Path) -> Result<ImageRecord, crate::ImageError> {
    serde_json::from_slice(&fs_err::read(out.join("image.json"))?)
        .map_err(|e| crate::ImageError::msg(format!("{}: {e}", out.display())))
}
