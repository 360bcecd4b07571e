//! NestOS compose rules: one module per node kind (overlay layer, unpack, rootfs, rpm database,
//! scriptlets, postprocess, initramfs, ostree layout). The workdir, the build file and the
//! graph expansion that uses these rules are in `nosa-build`.

pub mod compose;
pub mod compress;
pub mod listing;
pub mod output;
pub mod overlay;
pub mod overrides_rpm;
pub mod pending;
pub mod portable;
pub mod rootfs;
pub mod rpmdb;
pub mod scriptlets;
pub mod trace;
pub mod unpack;

/// The host programs whose `--version` output enters node keys (`nosa_repo::tool_version`:
/// the rpm database's `rpm`, the override repository's `createrepo_c`, the signature checks'
/// `rpmkeys` and `sqv`): a no-op witness watches the files they resolve to.
pub const HOST_TOOLS_IN_KEYS: [&str; 4] = ["rpm", "createrepo_c", "rpmkeys", "sqv"];
