//! kola runs of the latest build: which `kola:` nodes a pattern selects on the images the
//! build recorded (the denylist turns a match into SKIP), the check that those images are the
//! latest build's, the run (each test boots its image once; a result cached for the same
//! image and test is reported, not rerun), and the report under `tmp/kola/`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use nosa_engine::{BuildOptions, BuildReport, Observer, Planned, Status};
use nosa_image::ImageFormat;
use nosa_kola::KolaResult;
use nosa_kola::plan::{denylist, name_matches};
use serde::Serialize;
use serde_json::Value as J;

use crate::staged::staged_build;
use crate::{Error, Session, ids};

/// One test of the graph, for `kola list`.
#[derive(Clone, Debug, Serialize)]
pub struct Listed {
    /// The test's name.
    pub test: String,
    /// The image it boots.
    pub image: String,
    /// The arch.
    pub arch: String,
    /// Its node id.
    pub node: String,
    /// Whether it can run now (not a planned node).
    pub runnable: bool,
}

/// The kola tests of the graph (call after [`Session::expand_current`]).
pub fn list(s: &Session) -> Vec<Listed> {
    let ids = s.ws.targets.get("kola").cloned().unwrap_or_default();
    ids.iter()
        .filter_map(|id| {
            let (arch, image, test) = ids::parse_kola(id)?;
            let kind =
                s.ws.graph
                    .index_of(id)
                    .map(|i| s.ws.graph.node(i).rule.kind().to_string())
                    .unwrap_or_default();
            Some(Listed {
                test: test.into(),
                image: image.into(),
                arch: arch.into(),
                node: id.clone(),
                runnable: kind == "kola",
            })
        })
        .collect()
}

/// What to run.
#[derive(Clone, Debug, Default)]
pub struct KolaRequest {
    /// Test name glob (`*` when absent).
    pub pattern: Option<String>,
    /// Only these images (else every image the latest build recorded).
    pub images: Vec<String>,
    /// Rerun cached results.
    pub force: bool,
    /// Boots at once.
    pub jobs: Option<usize>,
}

/// One line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The test.
    pub test: String,
    /// The image.
    pub image: String,
    /// The arch.
    pub arch: String,
    /// `PASS`, `FAIL`, `SKIP` or `ERROR`.
    pub status: &'static str,
    /// Firmware, time and whether it ran; or why it was skipped or failed.
    pub detail: String,
    /// The node id.
    pub node: String,
    /// The test's result, when it has one.
    pub result: Option<KolaResult>,
}

/// A finished kola run.
#[derive(Debug)]
pub struct KolaRun {
    /// The build tested.
    pub build_id: String,
    /// One row per selected test.
    pub rows: Vec<Row>,
    /// The engine's report of the kola nodes.
    pub report: BuildReport,
    /// The text report (also in `tmp/kola/reports/report.txt`).
    pub text: String,
    /// `tmp/kola/`.
    pub out_dir: PathBuf,
}

impl KolaRun {
    /// Rows with `status`.
    pub fn count(&self, status: &str) -> usize {
        self.rows.iter().filter(|r| r.status == status).count()
    }
}

/// Runs the selected tests on the latest build's images and writes the report.
pub fn run(s: &mut Session, req: &KolaRequest, obs: &mut dyn Observer) -> Result<KolaRun, Error> {
    s.expand_current()?;
    let builds = s.builds();
    let Some(build_id) = builds.latest() else {
        return Err(Error::refused(
            "no build to test: builds/builds.json lists none",
            "run `nosa build qemu` (or `nosa build qemu metal metal4k`) first",
        ));
    };
    let built: BTreeMap<String, Vec<String>> = s
        .arches()
        .into_iter()
        .map(|arch| {
            let formats = builds
                .meta(&build_id, &arch)
                .map(|m| m.images.into_keys().collect())
                .unwrap_or_default();
            (arch, formats)
        })
        .collect();
    for img in &req.images {
        if ImageFormat::parse(img).is_none() {
            return Err(Error::usage(
                format!("--image {img}: not an image kola boots"),
                "use one of qemu, metal, metal4k",
            ));
        }
    }
    let pattern = req.pattern.clone().unwrap_or_else(|| "*".into());
    let stream =
        s.ws.configs
            .first()
            .and_then(|c| c.treefile.variables.get("stream"))
            .and_then(J::as_str)
            .map(str::to_string);
    let today = {
        let d = nosa_config::BuildDate::from_unix(crate::os::now() as i64);
        format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
    };
    // arch -> its denylist entries (pattern, tracker), read once.
    let denylists: BTreeMap<String, Vec<(String, String)>> =
        s.ws.configs
            .iter()
            .map(|c| {
                let arch = c.arch.to_string();
                let deny = denylist(c, &arch, stream.as_deref(), &today);
                (arch, deny)
            })
            .collect();
    let mut rows: Vec<Row> = Vec::new();
    let mut selected: Vec<String> = Vec::new();
    for id in s.ws.targets.get("kola").cloned().unwrap_or_default() {
        let Some((arch, image, test)) = ids::parse_kola(&id) else {
            continue;
        };
        if !name_matches(&pattern, test) {
            continue;
        }
        let wanted_image = if req.images.is_empty() {
            built
                .get(arch)
                .is_some_and(|f| f.iter().any(|f| f == image))
        } else {
            req.images.iter().any(|i| i == image)
        };
        if !wanted_image {
            continue;
        }
        let mut row = Row {
            test: test.into(),
            image: image.into(),
            arch: arch.into(),
            status: "",
            detail: String::new(),
            result: None,
            node: id.clone(),
        };
        if let Some((p, tracker)) = denylists
            .get(arch)
            .into_iter()
            .flatten()
            .find(|(p, _)| name_matches(p, test))
        {
            row.status = "SKIP";
            row.detail = format!("denylisted ({p}) {tracker}").trim().to_string();
            rows.push(row);
            continue;
        }
        selected.push(id.clone());
        rows.push(row);
    }
    if selected.is_empty() {
        return Err(Error::usage(
            format!("no test matches {pattern:?} on the images of build {build_id}"),
            "`nosa kola list` shows the tests; images not in the latest build need `nosa build <image>` (or pass --image)",
        ));
    }

    // The images must be the latest build's: kola tests builds, it does not make them.
    let image_nodes: Vec<usize> = selected
        .iter()
        .filter_map(|id| ids::parse_kola(id))
        .filter_map(|(arch, image, _)| s.ws.graph.index_of(&ids::image(arch, image)))
        .collect();
    let plan = s.engine.plan(&s.ws.graph, &image_nodes)?;
    let stale: Vec<String> = plan
        .iter()
        .filter(|e| ids::kind(&e.id) == "image" && e.planned != Planned::UpToDate)
        .map(|e| e.id.clone())
        .collect();
    if !stale.is_empty() {
        return Err(Error::refused(
            format!(
                "these images are not up to date with the config: {}",
                stale.join(", ")
            ),
            "run `nosa build qemu metal metal4k` (the images you test) first",
        ));
    }

    let workdir = s.workdir().to_path_buf();
    let opts = BuildOptions {
        jobs: req.jobs.unwrap_or(1).max(1),
        keep_going: true,
        ..BuildOptions::default()
    };
    let report = staged_build(s, &selected, &opts, req.force, obs);
    // Machines the tests shared stay up until every test ran.
    nosa_kola::machine::shutdown_pool();
    let report = report?;

    let state = s.engine.state();
    let out_dir = workdir.join("tmp/kola");
    if out_dir.exists() {
        fs_err::remove_dir_all(&out_dir)?;
    }
    for row in rows.iter_mut().filter(|r| r.status.is_empty()) {
        let node = report.nodes.iter().find(|n| n.id == row.node);
        match node.map(|n| n.status) {
            Some(Status::Ran | Status::Cached | Status::Cutoff | Status::Remote) => {
                let r: Option<KolaResult> = s
                    .output_file(&state, &row.node, "result.json")
                    .and_then(|b| serde_json::from_slice(&b).ok());
                let dir = out_dir.join(&row.arch).join(&row.image).join(&row.test);
                fs_err::create_dir_all(&dir)?;
                for f in ["result.json", "output.txt", "console.txt"] {
                    if let Some(b) = s.output_file(&state, &row.node, f) {
                        fs_err::write(dir.join(f), b)?;
                    }
                }
                let how = if node.is_some_and(|n| n.status == Status::Ran) {
                    "ran"
                } else {
                    "cached"
                };
                match r {
                    Some(r) => {
                        row.status = if r.status == "PASS" { "PASS" } else { "FAIL" };
                        let boot = if r.shared { "shared boot" } else { "boot" };
                        row.detail = format!(
                            "{}, {boot} {} s, test {} s, {how}",
                            r.firmware, r.boot_secs, r.secs
                        );
                        row.result = Some(r);
                    }
                    None => {
                        row.status = "ERROR";
                        row.detail = "the node's output has no result.json".into();
                    }
                }
            }
            Some(Status::Failed) => {
                row.status = "ERROR";
                row.detail = node
                    .and_then(|n| n.error.clone())
                    .unwrap_or_default()
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
            }
            _ => {
                row.status = "ERROR";
                row.detail = "not run (a dependency failed)".into();
            }
        }
    }
    let mut run = KolaRun {
        build_id,
        rows,
        report,
        text: String::new(),
        out_dir,
    };
    write_report(&mut run)?;
    Ok(run)
}

/// Writes `tmp/kola/reports/report.{txt,json}` and keeps the text in `run.text`.
fn write_report(run: &mut KolaRun) -> Result<(), Error> {
    let mut text = format!("nosa kola report: build {}\n\n", run.build_id);
    for r in &run.rows {
        let _ = writeln!(
            text,
            "{:<5}  {:<32} {:<8} {:<7} {}",
            r.status, r.test, r.image, r.arch, r.detail
        );
    }
    let _ = writeln!(
        text,
        "\nSummary: {} tests: {} PASS, {} FAIL, {} ERROR, {} SKIP",
        run.rows.len(),
        run.count("PASS"),
        run.count("FAIL"),
        run.count("ERROR"),
        run.count("SKIP")
    );
    let reports = run.out_dir.join("reports");
    fs_err::create_dir_all(&reports)?;
    fs_err::write(reports.join("report.txt"), &text)?;
    #[derive(Serialize)]
    struct Summary {
        total: usize,
        pass: usize,
        fail: usize,
        error: usize,
        skip: usize,
    }
    #[derive(Serialize)]
    struct ReportJson<'a> {
        build: &'a str,
        tests: &'a [Row],
        summary: Summary,
    }
    let rj = ReportJson {
        build: &run.build_id,
        tests: &run.rows,
        summary: Summary {
            total: run.rows.len(),
            pass: run.count("PASS"),
            fail: run.count("FAIL"),
            error: run.count("ERROR"),
            skip: run.count("SKIP"),
        },
    };
    fs_err::write(
        reports.join("report.json"),
        serde_json::to_vec_pretty(&rj).map_err(std::io::Error::other)?,
    )?;
    run.text = text;
    Ok(())
}
