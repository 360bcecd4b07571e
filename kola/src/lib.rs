//! Tests of built images, as nestos-assembler's kola runs them, under QEMU.
//!
//! - [`qemu`]: the virtual machine (accelerator choice with a cached KVM probe, disks by
//!   serial, BIOS or OVMF, boot until power-off or a console pattern).
//! - [`KolaRule`] is the engine rule `kola:<arch>:<image>:<test>`: one test in one boot of one
//!   image; the built-in `nestos.basic` runs the static guest script `basic.sh`.
//! - [`plan`]: which tests run where (`nestos.basic` on every image, the config's external
//!   tests on qemu, with their kola metadata), kola's name globs and the denylist.
//!
//! The config files (`tests/kola/`, `kola.json`, `# kola:` headers, `kola-denylist.yaml`) are
//! read by `nosa_config::Config::load`; this crate reads none. See `docs/kola.md`.

pub mod plan;
pub mod qemu;
mod rule;

pub use rule::{
    BASIC_TEST, IN_SERIAL, KolaKind, KolaResult, KolaRule, OUT_SERIAL, read_kola_result,
};
