//! `ostree-ext-check`: imports an ostree-native OCI image with ostree-ext's own importer (the
//! code `rpm-ostree rebase ostree-unverified-image:...` and bootc run) into an ostree repository
//! and prints what it imported as JSON, so that nosa's tests can compare it with the commit
//! nosa exported.
//!
//! Usage: `ostree-ext-check REPO IMAGE [MODE]`, e.g. `ostree-ext-check /tmp/repo
//! oci-archive:/path/x.ociarchive`. REPO is created when missing, in MODE (`bare`, the mode of
//! a system's `/ostree/repo`, the default, which needs root; or `bare-user`). In `bare-user`
//! ostree-ext's merge commit loses the owner of empty files (it copies them out of a user-mode
//! checkout), so compare content in `bare`. The image is imported twice, as two importers do
//! it:
//!
//! - `unencapsulate` (`ostree container unencapsulate`): the commit alone;
//! - `store` (`ostree container image pull`, what `rpm-ostree rebase` runs): every layer stored
//!   under its own ref, then a merge commit.
//!
//! Output: `{"commit": <unencapsulated commit>, "base_commit": ..., "merge_commit": ...,
//! "manifest_digest": ..., "layers": <number>, "skopeo_proxy": "ok"}`. Any failure exits 1 with
//! ostree-ext's error chain.

use anyhow::{Context, Result};
use ostree_ext::container::store::{ImageImporter, PrepareResult};
use ostree_ext::container::{OstreeImageReference, SignatureSource};
use ostree_ext::{gio, ostree};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("ostree-ext-check: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (repo_path, image, mode) = match args.as_slice() {
        [r, i] => (r, i, "bare"),
        [r, i, m] => (r, i, m.as_str()),
        _ => anyhow::bail!(
            "usage: ostree-ext-check REPO IMAGE [bare|bare-user] (e.g. oci-archive:/path/x.ociarchive)"
        ),
    };
    let mode = match mode {
        "bare" => ostree::RepoMode::Bare,
        "bare-user" => ostree::RepoMode::BareUser,
        other => anyhow::bail!("unknown repository mode {other:?}: bare or bare-user"),
    };
    let repo = ostree::Repo::new_for_path(repo_path);
    if std::path::Path::new(repo_path).join("config").exists() {
        repo.open(gio::Cancellable::NONE)
            .with_context(|| format!("opening {repo_path}"))?;
    } else {
        fs_err::create_dir_all(repo_path)?;
        repo.create(mode, gio::Cancellable::NONE)
            .with_context(|| format!("creating {repo_path}"))?;
    }
    let imgref = OstreeImageReference {
        sigverify: SignatureSource::ContainerPolicyAllowInsecure,
        imgref: image
            .as_str()
            .try_into()
            .context("parsing the image reference")?,
    };

    let unenc = ostree_ext::container::unencapsulate(&repo, &imgref)
        .await
        .context("ostree-ext unencapsulate")?;

    let mut importer = ImageImporter::new(&repo, &imgref, Default::default())
        .await
        .context("ostree-ext ImageImporter::new")?;
    importer.require_bootable();
    let state = match importer.prepare().await.context("ostree-ext prepare")? {
        PrepareResult::AlreadyPresent(s) => s,
        PrepareResult::Ready(prep) => importer.import(prep).await.context("ostree-ext import")?,
    };
    let out = serde_json::json!({
        "commit": unenc.ostree_commit,
        "base_commit": state.base_commit,
        "merge_commit": state.merge_commit,
        "manifest_digest": state.manifest_digest.to_string(),
        "layers": state.manifest.layers().len(),
    });
    println!("{out}");
    Ok(())
}
