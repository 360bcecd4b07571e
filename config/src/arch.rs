//! Base architectures nosa can build for, and the host's.

use std::fmt;
use std::str::FromStr;

/// A base architecture (`$basearch` in rpm-ostree and dnf terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    /// 64-bit x86.
    X86_64,
    /// 64-bit ARM.
    Aarch64,
    /// 64-bit little-endian POWER.
    Ppc64le,
    /// IBM Z.
    S390x,
    /// 64-bit RISC-V.
    Riscv64,
}

impl Arch {
    /// Every architecture nosa knows, in a stable order.
    pub const ALL: [Arch; 5] = [
        Arch::X86_64,
        Arch::Aarch64,
        Arch::Ppc64le,
        Arch::S390x,
        Arch::Riscv64,
    ];

    /// The `$basearch` spelling, e.g. `x86_64`.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Ppc64le => "ppc64le",
            Arch::S390x => "s390x",
            Arch::Riscv64 => "riscv64",
        }
    }

    /// The architecture of the machine nosa runs on, if it is one nosa knows
    /// (this is what `nosa basearch` prints).
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Aarch64),
            "powerpc64" if cfg!(target_endian = "little") => Some(Arch::Ppc64le),
            "s390x" => Some(Arch::S390x),
            "riscv64" => Some(Arch::Riscv64),
            _ => None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An architecture name nosa does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[error("unknown architecture `{0}`")]
#[diagnostic(
    code(nosa::config::unknown_arch),
    help("known architectures: x86_64, aarch64, ppc64le, s390x, riscv64")
)]
pub struct UnknownArch(pub String);

impl FromStr for Arch {
    type Err = UnknownArch;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Arch::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownArch(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for a in Arch::ALL {
            assert_eq!(a.as_str().parse::<Arch>().unwrap(), a);
        }
        assert!("i686".parse::<Arch>().is_err());
    }
}
