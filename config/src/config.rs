//! The resolved configuration of one arch: everything a build graph needs from a
//! nestos-config tree.

use std::path::{Path, PathBuf};

use serde_json::Value as J;

use crate::arch::Arch;
use crate::error::{ConfigError, ConfigWarning, locate};
use crate::image::{self, ImageConfig};
use crate::layout::{self, KolaTests, OverlayLayer};
use crate::lockfile::{self, Lockfiles};
use crate::repo::{self, Repo, RepoVars};
use crate::source::{Origin, Sources};
use crate::treefile::Treefile;
use crate::treefile::load::Loader;

/// How to load a configuration.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The target architecture (`$basearch`).
    pub arch: Arch,
    /// Load `manifest-<variant>.yaml` and `image-<variant>.yaml` instead of
    /// `manifest.yaml` and `image.yaml`.
    pub variant: Option<String>,
    /// The workdir root, substituted for `$nosa_workdir` in `.repo` files.
    pub workdir: Option<PathBuf>,
    /// When true (the default), a `repos`/`lockfile-repos` entry that no `.repo` file
    /// defines is an error, as in rpm-ostree; when false it is a warning (useful to inspect
    /// a broken config with `config show`).
    pub strict_repos: bool,
}

impl LoadOptions {
    /// Options for `arch`, no variant, no workdir.
    pub fn new(arch: Arch) -> Self {
        LoadOptions {
            arch,
            variant: None,
            workdir: None,
            strict_repos: true,
        }
    }
}

/// A nestos-config tree resolved for one architecture.
#[derive(Debug)]
pub struct Config {
    /// The config directory (canonical).
    pub dir: PathBuf,
    /// The target architecture.
    pub arch: Arch,
    /// The root treefile.
    pub manifest: PathBuf,
    /// The flattened treefile.
    pub treefile: Treefile,
    /// The flattened image.yaml (defaults applied); defaults only if there is none.
    pub image: ImageConfig,
    /// Every repo of every `*.repo` file in the config directory, in file then section order.
    pub repos: Vec<Repo>,
    /// Lockfiles for this arch.
    pub lockfiles: Lockfiles,
    /// Every `overlay.d/*` directory, sorted by name (see [`Config::applied_overlays`] for
    /// those the OS gets).
    pub overlays: Vec<OverlayLayer>,
    /// `live/`, if present.
    pub live_dir: Option<PathBuf>,
    /// `tests/kola/`, if present.
    pub kola: Option<KolaTests>,
    /// `platforms.yaml` as JSON, if present.
    pub platforms: Option<J>,
    /// `kola-denylist.yaml` as JSON, if present.
    pub kola_denylist: Option<J>,
    /// Every file read while loading, in order (absolute paths; inputs of graph keys).
    pub files_read: Vec<PathBuf>,
    /// The files of [`Config::files_read`] that image.yaml was loaded from (it and its
    /// includes): what the image nodes declare as inputs.
    pub image_files: Vec<PathBuf>,
    /// Problems that did not stop loading.
    pub warnings: Vec<ConfigWarning>,
}

impl Config {
    /// Loads and resolves the config tree in `dir` for `opts.arch`.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Config, ConfigError> {
        let dir = fs_err::canonicalize(dir)?;
        let suffix = opts
            .variant
            .as_deref()
            .map_or(String::new(), |v| format!("-{v}"));
        let manifest_name = format!("manifest{suffix}.yaml");
        let manifest = dir.join(&manifest_name);
        if !manifest.is_file() {
            return Err(ConfigError::NoManifest {
                dir,
                manifest: manifest_name,
            });
        }
        let mut sources = Sources::new(&dir);
        let mut warnings = Vec::new();
        let (layer, vars) = {
            let mut loader = Loader::new(&mut sources, &mut warnings, opts.arch);
            let layer = loader.load_root(&manifest)?;
            (layer, std::mem::take(&mut loader.vars))
        };
        let repo_origins: Vec<(String, Vec<(String, Origin)>)> = ["repos", "lockfile-repos"]
            .iter()
            .map(|k| {
                let items = layer
                    .entries
                    .get(*k)
                    .map(|e| {
                        e.value
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(J::as_str)
                            .map(str::to_string)
                            .zip(e.items.iter().copied())
                            .collect()
                    })
                    .unwrap_or_default();
                (k.to_string(), items)
            })
            .collect();
        let ostree_layer_origins = layer.entries.get("ostree-layers").map(|e| e.items.clone());
        let treefile = Treefile::resolve(layer, vars, &mut sources)?;

        // image.yaml
        let image_path = dir.join(format!("image{suffix}.yaml"));
        let image_start = sources.len();
        let image = if image_path.is_file() {
            image::load(&image_path, &mut sources)?
        } else {
            image::defaults_only()
        };
        let image_files = sources.paths_from(image_start);

        // .repo files
        let mut rv = RepoVars::default();
        rv.vars.extend(treefile.repovars.clone());
        rv.vars.insert("basearch".into(), opts.arch.as_str().into());
        rv.vars.insert("arch".into(), opts.arch.as_str().into());
        if let Some(r) = &treefile.releasever {
            rv.vars.insert("releasever".into(), r.clone());
        }
        if let Some(w) = &opts.workdir {
            rv.vars
                .insert("nosa_workdir".into(), w.to_string_lossy().into_owned());
        }
        let mut repos: Vec<Repo> = Vec::new();
        for path in repo::repo_files(&dir)? {
            let file = sources.read(&path)?;
            for (r, origin) in repo::parse(&sources, file, &rv)? {
                if let Some(prev) = repos.iter().find(|p| p.id == r.id) {
                    return Err(ConfigError::invalid(
                        &sources,
                        origin,
                        format!("repo `{}` is defined in two .repo files", r.id),
                        "defined again here",
                        Some(format!(
                            "also defined in {}",
                            sources.display_name(&prev.file)
                        )),
                    ));
                }
                repos.push(r);
            }
        }
        for (key, items) in &repo_origins {
            for (name, origin) in items {
                if !repos.iter().any(|r| &r.id == name) {
                    let known: Vec<&str> = repos.iter().map(|r| r.id.as_str()).collect();
                    let help = if known.is_empty() {
                        "no .repo file in the config directory defines any repo".to_string()
                    } else {
                        format!("repos defined by the .repo files: {}", known.join(", "))
                    };
                    if !opts.strict_repos {
                        warnings.push(ConfigWarning::new(
                            &sources,
                            *origin,
                            format!("`{key}` names unknown repo `{name}`"),
                            Some(help),
                        ));
                        continue;
                    }
                    let (src, span) = locate(&sources, *origin);
                    return Err(ConfigError::UnknownRepo {
                        key: key.clone(),
                        name: name.clone(),
                        src,
                        span,
                        help: Some(help),
                    });
                }
            }
        }

        let lockfiles = lockfile::load(&dir, opts.arch, &mut sources)?;
        let overlays = layout::overlay_layers(&dir)?;
        if let Some(origins) = ostree_layer_origins {
            for (layer_ref, origin) in treefile.ostree_layers.iter().zip(origins) {
                let msg = match layer_ref.strip_prefix("overlay/") {
                    Some(name) if overlays.iter().any(|o| o.name == name) => continue,
                    Some(name) => {
                        format!("ostree layer `{layer_ref}` has no overlay.d/{name} directory")
                    }
                    None => format!(
                        "ostree layer `{layer_ref}` is not an overlay.d layer; nosa only builds `overlay/<name>` layers from overlay.d"
                    ),
                };
                warnings.push(ConfigWarning::new(&sources, origin, msg, None));
            }
        }
        let live = dir.join("live");
        let kola = layout::kola_tests(&dir, &mut sources)?;
        let platforms = layout::optional_yaml(&dir, "platforms.yaml", &mut sources)?;
        let kola_denylist = layout::optional_yaml(&dir, "kola-denylist.yaml", &mut sources)?;
        Ok(Config {
            manifest,
            arch: opts.arch,
            treefile,
            image,
            repos,
            lockfiles,
            overlays,
            live_dir: live.is_dir().then_some(live),
            kola,
            platforms,
            kola_denylist,
            files_read: sources.paths(),
            image_files,
            warnings,
            dir,
        })
    }

    /// The value `nosa config show --json` prints: the flattened treefile (includes
    /// resolved, `packages-<arch>` merged into `packages`, variables substituted) plus
    /// `image`, the flattened image.yaml.
    /// Object keys are sorted at every level, whatever serde_json's map type.
    pub fn show_json(&self) -> J {
        let mut v = self.treefile.json.clone();
        if let J::Object(m) = &mut v {
            m.insert("image".into(), J::Object(self.image.json.clone()));
        }
        sorted(v)
    }

    /// The OS name image.yaml gives (`name`), `nestos` when it gives none: the name of the
    /// OCI archive, the images and meta.json's `name`.
    pub fn os_name(&self) -> &str {
        self.image
            .json
            .get("name")
            .and_then(J::as_str)
            .unwrap_or("nestos")
    }

    /// The overlay layers rpm-ostree checks out over the packages: the `overlay/<name>`
    /// entries of `ostree-layers`, in that order (cosa commits every `overlay.d` directory,
    /// but only those the manifest lists are applied). Entries without a directory were
    /// warned about at load time and are skipped.
    pub fn applied_overlays(&self) -> Vec<&OverlayLayer> {
        let mut out: Vec<&OverlayLayer> = Vec::new();
        for r in &self.treefile.ostree_layers {
            if let Some(layer) = self.overlays.iter().find(|o| &o.ref_name == r)
                && !out.iter().any(|o| o.ref_name == layer.ref_name)
            {
                out.push(layer);
            }
        }
        out
    }

    /// [`Config::show_json`] as YAML, for `nosa config show` without `--json`.
    pub fn show_yaml(&self) -> String {
        serde_saphyr::to_string(&self.show_json())
            .unwrap_or_else(|e| format!("# cannot render as YAML: {e}\n"))
    }

    /// The repos packages are resolved from: those named by `repos`, or every enabled
    /// repo when `repos` is absent.
    pub fn compose_repos(&self) -> Vec<&Repo> {
        if self.treefile.repos.is_empty() {
            return self.repos.iter().filter(|r| r.enabled).collect();
        }
        self.treefile
            .repos
            .iter()
            .filter_map(|id| self.repos.iter().find(|r| &r.id == id))
            .collect()
    }

    /// The repos named by `lockfile-repos` (only locked packages come from them).
    pub fn lockfile_repos(&self) -> Vec<&Repo> {
        self.treefile
            .lockfile_repos
            .iter()
            .filter_map(|id| self.repos.iter().find(|r| &r.id == id))
            .collect()
    }
}

/// `v` with every object's keys in sorted order (serde_json may preserve insertion order
/// when another crate enables its `preserve_order` feature).
fn sorted(v: J) -> J {
    match v {
        J::Object(m) => {
            let mut entries: Vec<(String, J)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            J::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        J::Array(a) => J::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}
