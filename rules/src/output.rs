//! A tool's captured output: written to the node's log, and its failure turned into an error
//! that carries the exit status and stderr.

use std::io::Write;
use std::process::Output;

use nosa_engine::RunError;

/// Appends `out`'s stdout and stderr to `log`; fails with `{what} failed (status): stderr`
/// unless the tool succeeded.
pub fn logged(log: &mut dyn Write, out: &Output, what: &str) -> Result<(), RunError> {
    log.write_all(&out.stdout)?;
    log.write_all(&out.stderr)?;
    if !out.status.success() {
        return Err(RunError::msg(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
