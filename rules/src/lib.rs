//! NestOS compose rules: one module per node kind (overlay layer, unpack, rootfs, rpm database,
//! scriptlets, postprocess, initramfs, ostree layout). The workdir, the build file and the
//! graph expansion that uses these rules are in `nosa-build`.

pub mod compose;
pub mod listing;
pub mod output;
pub mod overlay;
pub mod overrides_rpm;
pub mod pending;
pub mod rootfs;
pub mod rpmdb;
pub mod scriptlets;
pub mod trace;
pub mod unpack;
