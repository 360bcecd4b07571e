//! Node ids of a NestOS build, in one place: `kind[:arch][:name]` (DESIGN.md's node model).
//! Expansion, the OS build, kola and the commands all name nodes through these functions.

/// `repo-sync:<arch>:<repo>`.
pub fn repo_sync(arch: &str, repo: &str) -> String {
    format!("repo-sync:{arch}:{repo}")
}

/// `repo-keys:<arch>:<repo>`: a repository's `gpgkey=` keys.
pub fn repo_keys(arch: &str, repo: &str) -> String {
    format!("repo-keys:{arch}:{repo}")
}

/// `resolve:<arch>`.
pub fn resolve(arch: &str) -> String {
    format!("resolve:{arch}")
}

/// `rpm:<arch>:<nevra>`.
pub fn rpm(arch: &str, nevra: &str) -> String {
    format!("rpm:{arch}:{nevra}")
}

/// `unpack:<arch>:<nevra>`.
pub fn unpack(arch: &str, nevra: &str) -> String {
    format!("unpack:{arch}:{nevra}")
}

/// `rpmdb:<arch>`.
pub fn rpmdb(arch: &str) -> String {
    format!("rpmdb:{arch}")
}

/// `packages:<arch>`: the planned node that stands for the package nodes until resolve ran.
pub fn packages(arch: &str) -> String {
    format!("packages:{arch}")
}

/// `overlay:<layer>`.
pub fn overlay(layer: &str) -> String {
    format!("overlay:{layer}")
}

/// `rootfs:<arch>`.
pub fn rootfs(arch: &str) -> String {
    format!("rootfs:{arch}")
}

/// `scriptlets:<arch>`.
pub fn scriptlets(arch: &str) -> String {
    format!("scriptlets:{arch}")
}

/// `postprocess:<arch>:<n>`.
pub fn postprocess(arch: &str, n: usize) -> String {
    format!("postprocess:{arch}:{n}")
}

/// `initramfs:<arch>`.
pub fn initramfs(arch: &str) -> String {
    format!("initramfs:{arch}")
}

/// `ostree-tree:<arch>`.
pub fn ostree_tree(arch: &str) -> String {
    format!("ostree-tree:{arch}")
}

/// `ostree-commit:<arch>`.
pub fn ostree_commit(arch: &str) -> String {
    format!("ostree-commit:{arch}")
}

/// `oci:<arch>`.
pub fn oci(arch: &str) -> String {
    format!("oci:{arch}")
}

/// `image-fs:<arch>:<platform>`.
pub fn image_fs(arch: &str, platform: &str) -> String {
    format!("image-fs:{arch}:{platform}")
}

/// `image:<arch>:<format>`.
pub fn image(arch: &str, format: &str) -> String {
    format!("image:{arch}:{format}")
}

/// `compress:<arch>:<image>:<codec>` (`nosa compress`: a build's artifact, not a graph target).
pub fn compress(arch: &str, image: &str, codec: &str) -> String {
    format!("compress:{arch}:{image}:{codec}")
}

/// `uncompress:<arch>:<image>:<codec>` (`nosa uncompress`).
pub fn uncompress(arch: &str, image: &str, codec: &str) -> String {
    format!("uncompress:{arch}:{image}:{codec}")
}

/// `kola:<arch>:<image>:<test>`.
pub fn kola(arch: &str, image: &str, test: &str) -> String {
    format!("kola:{arch}:{image}:{test}")
}

/// `live-pxe:<arch>`: the live kernel, initramfs and rootfs.img.
pub fn live_pxe(arch: &str) -> String {
    format!("live-pxe:{arch}")
}

/// `live-custom:<arch>`: the ISO and PXE initramfs with `[live]`'s Ignition config embedded.
pub fn live_custom(arch: &str) -> String {
    format!("live-custom:{arch}")
}

/// `live:<arch>`: the live ISO and the PXE files under their artifact names.
pub fn live(arch: &str) -> String {
    format!("live:{arch}")
}

/// A kola node id's parts: arch, image, test.
pub fn parse_kola(id: &str) -> Option<(&str, &str, &str)> {
    let rest = id.strip_prefix("kola:")?;
    let (arch, rest) = rest.split_once(':')?;
    let (image, test) = rest.split_once(':')?;
    Some((arch, image, test))
}

/// The kind of a node id (`image` for `image:x86_64:qemu`).
pub fn kind(id: &str) -> &str {
    id.split_once(':').map_or(id, |(k, _)| k)
}

/// Kinds of the package half of the graph (what `build-fast` refuses to rerun).
pub const PACKAGE_KINDS: &[&str] = &["repo-sync", "resolve", "rpm", "unpack", "rpmdb", "packages"];

/// Kinds whose nodes exist only for a versioned commit: building one of them is building the
/// OS (a new or reused build id, recorded under builds/).
pub const VERSIONED_KINDS: &[&str] = &[
    "ostree-commit",
    "oci",
    "image-fs",
    "image",
    "kola",
    "live-pxe",
    "live",
    "live-custom",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_back() {
        let id = kola("x86_64", "qemu", "ext.config.a:b");
        assert_eq!(parse_kola(&id), Some(("x86_64", "qemu", "ext.config.a:b")));
        assert_eq!(kind(&image("x86_64", "qemu")), "image");
        assert_eq!(kind("resolve"), "resolve");
        assert_eq!(repo_sync("x86_64", "pool"), "repo-sync:x86_64:pool");
    }
}
