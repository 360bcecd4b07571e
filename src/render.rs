//! Rendering a build for people (a progress bar on a terminal, plain lines otherwise, on
//! stderr) and for programs (JSON lines on stdout).

use std::io::{IsTerminal, Write};
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nosa_engine::{BuildReport, Event, Observer, Status, Witnessed};

/// Renders build events.
pub struct Progress {
    /// Buffered stdout for JSON lines (30,000 unbuffered lines cost 30,000 writes).
    json_out: Option<std::io::BufWriter<std::io::Stdout>>,
    bar: Option<ProgressBar>,
    done: usize,
    workdir: std::path::PathBuf,
    /// Nodes already reported (a staged build sees its first stage's nodes again, cached).
    seen: std::collections::HashSet<String>,
}

impl Progress {
    /// A renderer; JSON lines on stdout when `json`.
    pub fn new(json: bool, workdir: &Path) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} {wide_msg}")
                    .expect("static template"),
            );
            b
        });
        Progress {
            json_out: json.then(|| std::io::BufWriter::with_capacity(1 << 16, std::io::stdout())),
            bar,
            done: 0,
            workdir: workdir.to_path_buf(),
            seen: Default::default(),
        }
    }

    fn line(&self, s: String) {
        match &self.bar {
            Some(b) => b.println(s),
            None => eprintln!("{s}"),
        }
    }

    /// Relative path for display.
    pub fn rel(&self, p: &Path) -> String {
        p.strip_prefix(&self.workdir)
            .unwrap_or(p)
            .display()
            .to_string()
    }
}

impl Observer for Progress {
    fn event(&mut self, e: &Event<'_>) {
        match e {
            Event::Start { total } => {
                if let Some(b) = &self.bar {
                    b.set_length(*total as u64);
                }
            }
            Event::Started { id } => {
                if let Some(b) = &self.bar {
                    b.set_message(format!("running {id}"));
                }
            }
            Event::Finished(r) => {
                if !self.seen.insert(r.id.clone()) {
                    return;
                }
                self.done += 1;
                if let Some(b) = &self.bar {
                    b.set_position(self.done as u64);
                }
                if let Some(out) = &mut self.json_out {
                    // Keys in the order `serde_json::json!` used to print them (sorted).
                    #[derive(serde::Serialize)]
                    struct NodeLine<'a> {
                        error: &'a Option<String>,
                        event: &'static str,
                        id: &'a str,
                        ms: u64,
                        #[serde(skip_serializing_if = "Option::is_none")]
                        note: &'a Option<String>,
                        reasons: Vec<String>,
                        status: &'static str,
                    }
                    let line = NodeLine {
                        error: &r.error,
                        event: "node",
                        id: &r.id,
                        ms: r.ms,
                        note: &r.note,
                        reasons: r.reasons.iter().map(ToString::to_string).collect(),
                        status: r.status.as_str(),
                    };
                    let _ = serde_json::to_writer(&mut *out, &line);
                    let _ = out.write_all(b"\n");
                    // Cached nodes come in bursts and are buffered; a node that ran is news.
                    if r.status != Status::Cached {
                        let _ = out.flush();
                    }
                }
                match r.status {
                    Status::Ran if r.reused => {
                        self.line(format!(
                            "reused  {} ({:.2} s): {}",
                            r.id,
                            r.ms as f64 / 1000.0,
                            r.note.as_deref().unwrap_or_default()
                        ));
                    }
                    Status::Ran => {
                        let why = r
                            .reasons
                            .first()
                            .map(|x| format!(": {x}"))
                            .unwrap_or_default();
                        self.line(format!(
                            "ran     {} ({:.2} s){why}",
                            r.id,
                            r.ms as f64 / 1000.0
                        ));
                    }
                    Status::Failed => {
                        let log = r
                            .log
                            .as_ref()
                            .map(|l| format!("\n        log: {}", self.rel(l)))
                            .unwrap_or_default();
                        self.line(format!(
                            "FAILED  {}: {}{log}",
                            r.id,
                            r.error.as_deref().unwrap_or("failed")
                        ));
                    }
                    // Counted in the closing line, like cached nodes: a warm remote gives
                    // hundreds at once.
                    Status::Remote | Status::Cached | Status::Cutoff | Status::Skipped => {}
                }
            }
        }
    }
}

/// Reports a no-op build answered by its witness (`Engine::check_witness`): every node of
/// `w.ids` cached and the witnessed build's note, exactly as the normal no-op reports them.
/// `since`: when the build started.
pub fn witnessed(json: bool, workdir: &Path, w: Witnessed, since: std::time::SystemTime) {
    let Witnessed { ids, note } = w;
    let mut progress = Progress::new(json, workdir);
    progress.event(&Event::Start { total: ids.len() });
    let mut report = BuildReport::default();
    report.nodes.reserve_exact(ids.len());
    for id in ids {
        let r = nosa_engine::NodeResult {
            id,
            status: Status::Cached,
            ms: 0,
            reasons: Vec::new(),
            error: None,
            log: None,
            note: None,
            reused: false,
            farm: None,
        };
        progress.event(&Event::Finished(&r));
        report.nodes.push(r);
    }
    if let Some(n) = note {
        eprintln!("{n}");
    }
    report.ms = since.elapsed().map_or(0, |d| d.as_millis() as u64);
    progress.finish(&report);
    // The process exits next: freeing the report is wasted work.
    std::mem::forget(report);
}

impl Progress {
    /// Prints the closing line (stderr) and, with JSON, the summary line (stdout).
    pub fn finish(self, report: &BuildReport) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let reused = report.nodes.iter().filter(|n| n.reused).count();
        let farm = report.nodes.iter().filter(|n| n.farm.is_some()).count();
        let of_them: Vec<String> = [(reused, "reused by trace"), (farm, "on the build farm")]
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} of them {what}"))
            .collect();
        let ran = match of_them.is_empty() {
            true => format!("{} ran", report.count(Status::Ran)),
            false => format!("{} ran ({})", report.count(Status::Ran), of_them.join(", ")),
        };
        let mut parts = vec![
            ran,
            format!("{} cached", report.count(Status::Cached)),
            format!("{} cut off", report.count(Status::Cutoff)),
        ];
        if report.count(Status::Remote) > 0 {
            parts.insert(
                1,
                format!("{} from the remote cache", report.count(Status::Remote)),
            );
        }
        for (s, label) in [(Status::Failed, "failed"), (Status::Skipped, "skipped")] {
            let n = report.count(s);
            if n > 0 {
                parts.push(format!("{n} {label}"));
            }
        }
        eprintln!(
            "{} nodes: {} ({:.2} s)",
            report.nodes.len(),
            parts.join(", "),
            report.ms as f64 / 1000.0
        );
        if let Some(mut out) = self.json_out {
            let _ = out.flush();
            drop(out);
            #[derive(serde::Serialize)]
            struct SummaryNode<'a> {
                id: &'a str,
                ms: u64,
                #[serde(skip_serializing_if = "Option::is_none")]
                note: &'a Option<String>,
                #[serde(skip_serializing_if = "std::ops::Not::not")]
                reused: bool,
                #[serde(skip_serializing_if = "Option::is_none")]
                farm: &'a Option<String>,
                status: &'static str,
            }
            let nodes: Vec<_> = report
                .nodes
                .iter()
                .filter(|n| n.status != Status::Skipped)
                .map(|n| SummaryNode {
                    id: &n.id,
                    ms: n.ms,
                    note: &n.note,
                    reused: n.reused,
                    farm: &n.farm,
                    status: n.status.as_str(),
                })
                .collect();
            let v = serde_json::json!({
                "event": "summary",
                "ran": report.count(Status::Ran),
                "cached": report.count(Status::Cached),
                "cutoff": report.count(Status::Cutoff),
                "remote": report.count(Status::Remote),
                "farm": farm,
                "failed": report.count(Status::Failed),
                "skipped": report.count(Status::Skipped),
                "ms": report.ms,
                "nodes": nodes,
            });
            println!("{v}");
        }
    }
}

/// Renders a diagnostic (a warning, say) the way miette renders errors: colour only on a
/// terminal and without `NO_COLOR`.
pub fn diagnostic(d: &dyn miette::Diagnostic) -> String {
    use miette::{GraphicalReportHandler, GraphicalTheme};
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let theme = if colour {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let mut out = String::new();
    let _ = GraphicalReportHandler::new_themed(theme).render_report(&mut out, d);
    out
}
