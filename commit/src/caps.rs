//! File capabilities: libcap's text form (`cap_net_raw=ep`, as RPM headers carry it) to the
//! `security.capability` xattr value (`vfs_cap_data`, revision 2).

/// Capability names, in bit order (linux/capability.h).
const NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x1;

/// A capability text that cannot be parsed.
#[derive(Debug, thiserror::Error)]
#[error("capabilities {text:?}: {message}")]
pub struct CapsError {
    text: String,
    message: String,
}

#[derive(Default, Clone, Copy)]
struct Sets {
    effective: u64,
    permitted: u64,
    inheritable: u64,
}

fn names_mask(names: &str, text: &str) -> Result<u64, CapsError> {
    if names.is_empty() || names == "all" {
        return Ok((1u64 << NAMES.len()) - 1);
    }
    let mut mask = 0u64;
    for n in names.split(',') {
        let lower = n.to_ascii_lowercase();
        let short = lower.strip_prefix("cap_").unwrap_or(&lower);
        let bit = NAMES
            .iter()
            .position(|k| *k == short)
            .ok_or_else(|| CapsError {
                text: text.to_string(),
                message: format!("unknown capability {n:?}"),
            })?;
        mask |= 1u64 << bit;
    }
    Ok(mask)
}

/// The `security.capability` value for `text` (libcap's `cap_to_text` form), or `None` when it
/// grants nothing.
pub fn caps_from_text(text: &str) -> Result<Option<Vec<u8>>, CapsError> {
    let bad = |m: &str| CapsError {
        text: text.to_string(),
        message: m.to_string(),
    };
    let mut s = Sets::default();
    for clause in text.split_whitespace() {
        let op_at = clause
            .find(['=', '+', '-'])
            .ok_or_else(|| bad("a clause has no operator (=, + or -)"))?;
        let mask = names_mask(&clause[..op_at], text)?;
        let mut rest = &clause[op_at..];
        while let Some(op) = rest.chars().next() {
            let flags_end = rest[1..]
                .find(['=', '+', '-'])
                .map(|i| i + 1)
                .unwrap_or(rest.len());
            let flags = &rest[1..flags_end];
            if op == '=' {
                s.effective &= !mask;
                s.permitted &= !mask;
                s.inheritable &= !mask;
            }
            for f in flags.chars() {
                let set = match f {
                    'e' => &mut s.effective,
                    'p' => &mut s.permitted,
                    'i' => &mut s.inheritable,
                    _ => return Err(bad("flags must be e, i or p")),
                };
                if op == '-' {
                    *set &= !mask;
                } else {
                    *set |= mask;
                }
            }
            rest = &rest[flags_end..];
        }
    }
    if s.permitted == 0 && s.inheritable == 0 {
        return Ok(None);
    }
    let magic = VFS_CAP_REVISION_2
        | if s.effective != 0 {
            VFS_CAP_FLAGS_EFFECTIVE
        } else {
            0
        };
    let mut out = Vec::with_capacity(20);
    out.extend_from_slice(&magic.to_le_bytes());
    for word in 0..2 {
        let shift = 32 * word;
        out.extend_from_slice(&((s.permitted >> shift) as u32).to_le_bytes());
        out.extend_from_slice(&((s.inheritable >> shift) as u32).to_le_bytes());
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: Option<[u32; 5]>) {
        let got = caps_from_text(text).unwrap();
        let want = expect.map(|w| w.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
        assert_eq!(got, want, "{text}");
    }

    #[test]
    fn text_forms() {
        // cap_net_raw = bit 13
        check("cap_net_raw=ep", Some([0x0200_0001, 1 << 13, 0, 0, 0]));
        check("cap_net_raw+p", Some([0x0200_0000, 1 << 13, 0, 0, 0]));
        check(
            "cap_chown,cap_bpf+eip",
            Some([0x0200_0001, 1, 1, 1 << (39 - 32), 1 << (39 - 32)]),
        );
        check("= cap_setuid+ep", Some([0x0200_0001, 1 << 7, 0, 0, 0]));
        check("cap_setuid=ep cap_setuid-ep", None);
        check("", None);
    }

    #[test]
    fn errors() {
        assert!(caps_from_text("cap_nope=ep").is_err());
        assert!(caps_from_text("cap_chown").is_err());
        assert!(caps_from_text("cap_chown=x").is_err());
    }
}
