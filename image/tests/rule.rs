//! `ImageRule` in a real engine: a commit node (the fixture tree committed with
//! `commit_tree`) feeding `image:x86_64:qemu` and `image:x86_64:metal4k`; checks the file
//! names, `image.json`, `qemu-img check`, that a rebuild is cached, and boots the qemu image
//! (BIOS) to the serial marker.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{boot, make_tree, need_tools, scratch};
use nosa_cache::{Materialize, Store};
use nosa_commit::{CommitRecord, CommitRequest, MetaValue, RepoMode, commit_tree};
use nosa_engine::{
    BuildOptions, BuildReport, Engine, Graph, GraphBuilder, Params, Rule, RunContext, RunError,
    Status,
};
use nosa_image::{ImageFormat, ImageFsRule, ImageRule, check_qcow2, read_image_record};

/// Commits a prepared tree (a test stub: the tree's path is its only parameter) and writes
/// the commit node's output shape, `repo/` + `commit.json`.
struct CommitStub {
    tree: PathBuf,
}

impl Rule for CommitStub {
    fn kind(&self) -> &str {
        "commit-stub"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self, p: &mut Params) {
        p.add("tree", &self.tree);
    }
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), RunError> {
        let mut metadata = BTreeMap::new();
        metadata.insert("version".to_string(), MetaValue::Str("1.0".into()));
        let r = commit_tree(&CommitRequest {
            repo: ctx.out.join("repo"),
            mode: RepoMode::Archive,
            rootfs: self.tree.clone(),
            ref_name: "nestos/x86_64/test".into(),
            metadata,
            timestamp: 1_700_000_000,
            ..Default::default()
        })
        .map_err(|e| RunError::msg(e.to_string()))?;
        let rec = CommitRecord {
            ref_name: "nestos/x86_64/test".into(),
            version: "1.0".into(),
            checksum: r.checksum,
            content_checksum: r.content_checksum,
            timestamp: 1_700_000_000,
            parent: None,
            metadata: BTreeMap::new(),
        };
        fs_err::write(
            ctx.out.join("commit.json"),
            serde_json::to_vec_pretty(&rec).unwrap(),
        )?;
        Ok(())
    }
}

fn graph(tree: &Path) -> Graph {
    let mut b = GraphBuilder::new();
    b.add(
        "ostree-commit:x86_64",
        Arc::new(CommitStub {
            tree: tree.to_path_buf(),
        }),
        vec![],
    );
    for platform in ["qemu", "metal"] {
        let mut fs = ImageFsRule::new("x86_64", platform);
        fs.root_size_mib = 512;
        fs.extra_kargs = vec!["nosa.test=1".into()];
        fs.timestamp = 1_700_000_000;
        b.add(
            fs.node_id(),
            Arc::new(fs),
            vec!["ostree-commit:x86_64".into()],
        );
    }
    for format in [ImageFormat::Qemu, ImageFormat::Metal, ImageFormat::Metal4k] {
        let rule = ImageRule::new("x86_64", format, "nestos", "1.0");
        let fs = rule.fs_node_id();
        b.add(rule.node_id(), Arc::new(rule), vec![fs]);
    }
    b.build().unwrap()
}

fn build(engine: &Engine, g: &Graph) -> BuildReport {
    let all: Vec<usize> = (0..g.len()).collect();
    let opts = BuildOptions {
        jobs: 1,
        ..Default::default()
    };
    let r = engine
        .build(g, &all, &opts, &mut nosa_engine::Quiet)
        .unwrap();
    assert!(r.ok(), "{:#?}", r.nodes);
    r
}

fn output_of(engine: &Engine, id: &str, dest: &Path) {
    let digest = engine.state().nodes[id].good.unwrap().tree;
    let tree = engine.store().get_tree(&digest).unwrap();
    engine
        .store()
        .materialize(&tree, dest, Materialize::Copy)
        .unwrap();
}

#[test]
fn image_rule_builds_named_images_that_boot() {
    need_tools();
    let tmp = scratch();
    let w = tmp.path();
    let tree = w.join("tree");
    make_tree(&tree);
    let engine = Engine::new(w, Store::open(w.join("cache/store")).unwrap());
    let g = graph(&tree);
    let first = build(&engine, &g);
    // The commit, two image-fs nodes (metal and metal4k share one) and three images.
    assert_eq!(first.count(Status::Ran), 6);

    let qemu = w.join("out-qemu");
    output_of(&engine, "image:x86_64:qemu", &qemu);
    let file = qemu.join("nestos-1.0-qemu.x86_64.qcow2");
    assert!(file.is_file(), "missing {}", file.display());
    check_qcow2(&file).unwrap();
    let rec = read_image_record(&qemu).unwrap();
    assert_eq!(rec.file, "nestos-1.0-qemu.x86_64.qcow2");
    assert!(rec.disk.bios);
    assert!(rec.kargs.contains(&"ignition.platform.id=qemu".to_string()));
    assert_eq!(rec.kargs.last().unwrap(), "nosa.test=1");

    let m4k = w.join("out-metal4k");
    output_of(&engine, "image:x86_64:metal4k", &m4k);
    assert!(m4k.join("nestos-1.0-metal4k.x86_64.raw").is_file());
    let rec4k = read_image_record(&m4k).unwrap();
    assert_eq!(rec4k.disk.sector_size, 4096);
    assert!(!rec4k.disk.bios);

    let m = w.join("out-metal");
    output_of(&engine, "image:x86_64:metal", &m);
    let rec512 = read_image_record(&m).unwrap();
    assert_eq!(rec512.disk.sector_size, 512);
    assert!(rec512.disk.bios);
    // Shared filesystems: same commit, kargs and filesystem UUIDs; different disks.
    assert_eq!(rec512.commit, rec4k.commit);
    assert_eq!(rec512.kargs, rec4k.kargs);
    let fs_id = |r: &nosa_image::ImageRecord, name: &str| {
        r.disk
            .partitions
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.fs_id.clone())
            .unwrap()
    };
    assert_eq!(fs_id(&rec512, "root"), fs_id(&rec4k, "root"));
    assert_eq!(fs_id(&rec512, "boot"), fs_id(&rec4k, "boot"));
    assert_ne!(rec512.disk.disk_guid, rec4k.disk.disk_guid);
    assert!(
        rec4k
            .kargs
            .contains(&"ignition.platform.id=metal".to_string())
    );

    let second = build(&engine, &g);
    assert_eq!(second.count(Status::Cached), 6);

    let b = boot(
        "rule-bios-qcow2",
        w,
        false,
        &[
            "-drive".to_string(),
            format!("file={},if=virtio,format=qcow2", file.display()),
        ],
    );
    assert!(b.ok, "no marker:\n{}", b.tail);
    assert!(
        b.text.contains("nosa.test=1 "),
        "extra karg not on the command line"
    );
    assert!(b.text.contains("ignition.platform.id=qemu"));
}
