//! `nosa push-container`: the build's OCI archive to a registry or another transport (the
//! push itself is `nosa_oci::push`); a registry push records `base-oscontainer` in meta.json.

use nosa_build::BuildsDir;
use nosa_oci::{PushError, PushRequest, Transport};

use crate::cli::{Cli, PushContainerArgs};
use crate::exit::{Failure, OpResult, runtime};
use crate::ops::{find_workdir, lock};

fn usage(message: String, help: &str) -> Failure {
    Failure::Config(miette::miette!(help = help.to_string(), "{message}"))
}

/// `nosa push-container`.
pub fn push_container(cli: &Cli, a: &PushContainerArgs) -> OpResult {
    let transport = Transport::from_name(&a.transport)
        .ok_or_else(|| Failure::Config(PushError::Transport(a.transport.clone()).into()))?;
    let (workdir, _) = find_workdir(cli)?;
    // Held through the push: a prune cannot take the archive away under it.
    let _lock = lock(cli, &workdir, "nosa push-container")?;
    let builds = BuildsDir::of(&workdir);
    let id = match &a.build {
        Some(b) => b.clone(),
        None => builds.latest().ok_or_else(|| {
            usage(
                "there are no builds (builds/builds.json is missing or empty)".into(),
                "run `nosa build` first",
            )
        })?,
    };
    let arch = match &a.arch {
        Some(a) => a.clone(),
        None => nosa_config::Arch::host()
            .map(|a| a.to_string())
            .ok_or_else(|| {
                usage(
                    format!(
                        "this machine's arch ({}) is not one NestOS builds",
                        std::env::consts::ARCH
                    ),
                    "pass --arch",
                )
            })?,
    };
    let meta = builds.meta(&id, &arch).ok_or_else(|| {
        usage(
            format!("build {id} has no readable builds/{id}/{arch}/meta.json"),
            "`nosa list` shows the builds and their arches",
        )
    })?;
    let file = meta.images.get("ostree").ok_or_else(|| {
        usage(
            format!("build {id} ({arch}) has no OCI archive (no images.ostree in its meta.json)"),
            "`nosa build` makes it",
        )
    })?;
    let archive = builds.arch_dir(&id, &arch).join(&file.path);
    let default_tag = format!("{id}-{arch}");
    let pushed = nosa_oci::push(&PushRequest {
        archive: &archive,
        transport,
        image: &a.image,
        default_tag: &default_tag,
        authfile: a.authfile.as_deref(),
        insecure: a.insecure,
    })
    .map_err(|e| {
        if e.is_usage() {
            Failure::Config(e.into())
        } else {
            Failure::Build(Some(e.into()))
        }
    })?;
    let how = match pushed.blobs {
        Some((sent, present)) => format!("{sent} blobs written, {present} already there"),
        None => "copied by skopeo".into(),
    };
    eprintln!(
        "pushed build {id} ({arch}) to {}: {how}",
        pushed.destination
    );
    if let Some(image) = &pushed.image {
        let record = serde_json::json!({ "image": image, "digest": pushed.digest });
        builds
            .set_meta_field(&id, &arch, "base-oscontainer", record)
            .map_err(runtime)?;
        eprintln!("recorded base-oscontainer in builds/{id}/{arch}/meta.json");
    }
    println!("{}", pushed.digest);
    Ok(())
}
