//! Tests of built images, as nestos-assembler's kola runs them, under QEMU.
//!
//! - [`qemu`]: the virtual machine (accelerator choice with a cached KVM probe, disks by
//!   serial, BIOS or OVMF, boot until power-off or a console pattern).
//! - [`machine`]: a booted image reached over ssh (the Ignition config with a generated key,
//!   fw_cfg or the boot partition), and the pool of machines tests share.
//! - [`ignition`]: the Ignition configs nosa writes, and writing one to a boot partition.
//! - [`KolaRule`] is the engine rule `kola:<arch>:<image>:<test>`: one test on one image, over
//!   ssh; the built-in `nestos.basic` runs the static guest script `basic.sh`.
//! - [`plan`]: which tests run where (`nestos.basic` on every image, the config's external
//!   tests on qemu, with their kola metadata), kola's name globs and the denylist.
//!
//! The config files (`tests/kola/`, `kola.json`, `# kola:` headers, `kola-denylist.yaml`) are
//! read by `nosa_config::Config::load`; this crate reads none. See `docs/kola.md`.

pub mod ignition;
pub mod machine;
pub mod plan;
pub mod qemu;
mod rule;

pub use rule::{BASIC_TEST, KolaKind, KolaResult, KolaRule, read_kola_result};
