//! The rules a build farm's worker can make from their description ([`Rule::portable`]):
//! what `nosa-core exec-node` runs. A kind missing here always runs on the machine that
//! builds (docs/remote-cache.md names them and why).

use nosa_engine::Rule;

/// Makes the rule of `kind` from `spec`, its [`Rule::portable`] description.
pub fn decode(kind: &str, spec: &str) -> Result<Box<dyn Rule>, String> {
    let json = |e: serde_json::Error| format!("{kind}: {e}");
    Ok(match kind {
        "unpack" => {
            Box::new(serde_json::from_str::<crate::unpack::UnpackRule>(spec).map_err(json)?)
        }
        "overlay" => {
            Box::new(serde_json::from_str::<crate::overlay::OverlayRule>(spec).map_err(json)?)
        }
        "resolve" => Box::new(nosa_solve::ResolveRule::from_spec(spec)?),
        other => return Err(format!("rule kind {other:?} does not run on a build farm")),
    })
}
