//! The versions of host programs that enter node keys: `<tool> --version`, asked once per
//! process. The no-op witness watches these programs (`nosa_rules::HOST_TOOLS_IN_KEYS`).

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// `tool --version` as `PATH` finds it (trimmed), or `<tool> missing`: a rule that calls
/// `tool` puts this in its key, so another version of it reruns the node.
pub fn tool_version(tool: &'static str) -> &'static str {
    static SEEN: OnceLock<Mutex<HashMap<&'static str, &'static str>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .expect("tool versions");
    seen.entry(tool).or_insert_with(|| {
        let v = Command::new(tool)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| format!("{tool} missing"));
        Box::leak(v.into_boxed_str())
    })
}
