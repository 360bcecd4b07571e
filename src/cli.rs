//! Command-line types: every command and flag in one place (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// nosa: the NestOS assembler as a content-hashed build graph.
#[derive(Debug, Parser)]
#[command(name = "nosa", version, about, propagate_version = true)]
pub struct Cli {
    /// Run as if started in DIR (the workdir or a directory below it).
    #[arg(short = 'C', long = "workdir", global = true, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Fail instead of waiting when another nosa holds the workdir lock.
    #[arg(long, global = true)]
    pub no_wait: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build graph commands: build, plan, why, show, output.
    ///
    /// Example: `nosa graph why ostree-commit:x86_64`
    #[command(subcommand)]
    Graph(GraphCommand),
    /// Remove builds beyond the newest N (tagged builds stay), or the builds named, then
    /// delete cached outputs that neither the current graph nor a kept build reaches.
    ///
    /// Example: `nosa prune --keep-last-n 2 --dry-run`, `nosa prune --build 42.20261207.dev.0`
    Prune(PruneArgs),
    /// List the builds: id, arches, when, age, the config's git commit, tags and artifacts
    /// with their sizes.
    ///
    /// Example: `nosa list --json | jq -r '.builds[0].id'`
    List(ListArgs),
    /// Delete build artifacts (builds/, tmp/); with --all also the cache.
    ///
    /// Example: `nosa clean` (keeps the cache: the next build is all cache hits)
    Clean(CleanArgs),
    /// Tags in builds/builds.json (coreos-assembler's form): tagged builds are never pruned.
    ///
    /// Example: `nosa tag update --tag stable`
    #[command(subcommand)]
    Tag(TagCommand),
    /// Read or edit a build's meta.json (checked against coreos-assembler's v1 schema before
    /// anything is written).
    Meta(MetaArgs),
    /// Compress a build's images in place (graph nodes: in parallel, cached), updating
    /// meta.json with the compressed and uncompressed sizes and digests.
    ///
    /// Example: `nosa compress --compressor xz --artifact qemu`
    Compress(CompressArgs),
    /// Undo `nosa compress`: the images as they were built, meta.json updated.
    ///
    /// Example: `nosa uncompress --build 42.20261207.dev.0`
    Uncompress(UncompressArgs),
    /// Push the build's OCI archive to a registry (or another containers transport), and
    /// record the registry's manifest digest in meta.json as `base-oscontainer`.
    ///
    /// Example: `nosa push-container registry.example.com/nestos/nestos:42.1 --authfile auth.json`
    ///
    /// Example: `nosa push-container 127.0.0.1:5000/nestos --insecure` (tag `<buildid>-<arch>`)
    ///
    /// Example: `nosa push-container --transport oci-archive /srv/nestos.ociarchive:stable`
    PushContainer(PushContainerArgs),
    /// A shell, or COMMAND, inside the latest build's root filesystem (bubblewrap, /usr
    /// read-only).
    Runc(RuncArgs),
    /// A shell, or COMMAND, in the build environment: the workdir, nosa's tools on PATH.
    Shell(ShellArgs),
    /// Make a workdir from a nestos-config (git URL, local git repo or directory).
    ///
    /// Example: `mkdir work && cd work && nosa init https://gitee.com/openeuler/nestos-config`
    Init(InitArgs),
    /// Configuration commands.
    ///
    /// Example: `nosa config show --json`
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the architecture nosa builds for by default (the host's).
    ///
    /// Example: `nosa basearch` prints `x86_64`
    Basearch,
    /// Run one node on a build farm's worker, from the input root nosa made for it (what a
    /// remote execution runs; not for people).
    #[command(hide = true)]
    ExecNode(ExecNodeArgs),
    /// Compose and commit the OS for every configured arch, and record the build under builds/.
    ///
    /// Example: `nosa build qemu metal` (the OS, then its qemu and metal images)
    #[command(disable_version_flag = true)]
    Build(BuildCmdArgs),
    /// `build`, rerunning only overlay/override nodes and what follows them (fails if a
    /// package node would run).
    ///
    /// Example: `cp my.conf overrides/rootfs/etc/ && nosa build-fast`
    #[command(disable_version_flag = true)]
    BuildFast(BuildCmdArgs),
    /// Pin every repository (its current repomd.xml), then sync, resolve and download the
    /// packages of every configured arch: after it, a build needs no network.
    ///
    /// Example: `nosa fetch && nosa build` (the build then runs offline)
    Fetch(FetchArgs),
    /// `build qemu`: the qemu image of the latest build (building what it needs).
    ///
    /// Example: `nosa buildextend-qemu && nosa run`
    #[command(name = "buildextend-qemu", disable_version_flag = true)]
    BuildextendQemu(BuildextendArgs),
    /// `build metal`: the raw metal image (512-byte sectors).
    ///
    /// Example: `nosa buildextend-metal && nosa meta --image-path metal`
    #[command(name = "buildextend-metal", disable_version_flag = true)]
    BuildextendMetal(BuildextendArgs),
    /// `build metal4k`: the raw metal image with 4096-byte sectors.
    ///
    /// Example: `nosa buildextend-metal4k`
    #[command(name = "buildextend-metal4k", disable_version_flag = true)]
    BuildextendMetal4k(BuildextendArgs),
    /// `build openstack`: the OpenStack qcow2 image.
    ///
    /// Example: `nosa buildextend-openstack`
    #[command(name = "buildextend-openstack", disable_version_flag = true)]
    BuildextendOpenstack(BuildextendArgs),
    /// `build live`: the live ISO, kernel, initramfs and rootfs.img (nestos-assembler's
    /// buildextend-live), from the config's `live/` templates.
    ///
    /// Example: `nosa buildextend-live && nosa meta --image-path live-iso`
    #[command(name = "buildextend-live", disable_version_flag = true)]
    BuildextendLive(BuildextendArgs),
    /// Test commands (kola).
    ///
    /// Example: `nosa kola run 'ext.config.*'`
    #[command(subcommand)]
    Kola(KolaCommand),
    /// `kola run` of every test, then the summary `tmp/kola/reports/report.txt`.
    ///
    /// Example: `nosa kola-run --image qemu`
    KolaRun(KolaRunArgs),
    /// Boot the latest qemu image with QEMU, its serial console on this terminal.
    ///
    /// Example: `nosa run --ssh -- systemctl is-system-running`
    Run(RunArgs),
    /// Print (or with --exec run) the virt-install command that imports the latest qemu image.
    ///
    /// Example: `nosa virt-install --memory 2048 --exec`
    VirtInstall(VirtInstallArgs),
}

/// Flags shared by `nosa build`, `build-fast` and `buildextend-*`.
#[derive(Clone, Debug, Args)]
pub struct BuildCommon {
    /// Only this architecture.
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// Nodes run at once (default: number of cores).
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,
    /// JSON lines on stdout, as `graph build --json`.
    #[arg(long)]
    pub json: bool,
    /// The remote cache.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Remote cache flags (docs/remote-cache.md).
#[derive(Debug, Args, Clone, Default)]
pub struct RemoteArgs {
    /// Read and write this remote cache instead of the build file's `[cache] remote`:
    /// `grpc://host:port` (REAPI) or `http://host:port/prefix` (Bazel's HTTP cache layout).
    #[arg(long, value_name = "URL", conflicts_with = "no_remote")]
    pub remote_cache: Option<String>,
    /// The REAPI instance name, instead of the build file's `[cache] instance`.
    #[arg(long, value_name = "NAME", conflicts_with = "no_remote")]
    pub remote_instance: Option<String>,
    /// Use no remote cache, whatever the build file says.
    #[arg(long)]
    pub no_remote: bool,
    /// Run the commands of steps on the remote's Execution service (an REAPI build farm),
    /// as `[cache] execute = true` does.
    #[arg(long, conflicts_with = "no_remote")]
    pub remote_execute: bool,
}

/// `nosa buildextend-*`.
#[derive(Debug, Args)]
pub struct BuildextendArgs {
    /// Shared build flags.
    #[command(flatten)]
    pub common: BuildCommon,
}

/// `nosa kola ...`.
#[derive(Debug, Subcommand)]
pub enum KolaCommand {
    /// Run tests on the latest build's images: each selected test boots its image once;
    /// results are cached by image and test.
    ///
    /// Example: `nosa kola run nestos.basic --force`
    Run(KolaRunArgs),
    /// List the tests and the images they run on.
    ///
    /// Example: `nosa kola list --json`
    List(KolaListArgs),
}

/// `nosa kola run`, `nosa kola-run`.
#[derive(Debug, Args)]
pub struct KolaRunArgs {
    /// Glob over test names (`nestos.basic`, `ext.config.*`); default every test.
    #[arg(value_name = "PATTERN")]
    pub pattern: Option<String>,
    /// Only tests on these images (qemu, metal, metal4k); default every image the latest
    /// build has.
    #[arg(long = "image", value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Only this architecture.
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// Rerun the selected tests even if a result is cached.
    #[arg(long)]
    pub force: bool,
    /// Tests run at once (default: 1; each is a QEMU machine).
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,
    /// JSON lines on stdout, as `graph build --json`.
    #[arg(long)]
    pub json: bool,
}

/// `nosa kola list`.
#[derive(Debug, Args)]
pub struct KolaListArgs {
    /// Only this architecture.
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// `nosa run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The image to boot (default: the latest build's qemu image).
    #[arg(long, value_name = "PATH")]
    pub qemu_image: Option<PathBuf>,
    /// Guest memory in MiB.
    #[arg(long, short = 'm', value_name = "MIB", default_value_t = 2048)]
    pub memory: u64,
    /// Ignition config passed with `-fw_cfg name=opt/com.coreos/config` (with --ssh or
    /// --authorize-key, merged into the config that authorizes the key).
    #[arg(long, short = 'i', value_name = "FILE")]
    pub ignition: Option<PathBuf>,
    /// Boot with a config that authorizes a key for the `nest` user: PUBKEY (a .pub file), or
    /// without a value your ~/.ssh/id_ed25519.pub, id_ecdsa.pub or id_rsa.pub, or else a key
    /// generated under tmp/run/.
    #[arg(long, value_name = "PUBKEY", num_args = 0..=1, default_missing_value = "")]
    pub authorize_key: Option<String>,
    /// Log in over ssh as `nest` with a generated key once the machine answers, as `cosa run`
    /// does (the console goes to tmp/run/console.txt); the machine powers off when ssh ends.
    #[arg(long)]
    pub ssh: bool,
    /// Boot with UEFI (OVMF) instead of BIOS.
    #[arg(long)]
    pub uefi: bool,
    /// Same as --ssh (cosa's name).
    #[arg(long)]
    pub devshell: bool,
    /// Print the QEMU command line and exit.
    #[arg(long)]
    pub dry_run: bool,
    /// With --ssh: the command to run instead of a login shell (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `nosa virt-install`.
#[derive(Debug, Args)]
pub struct VirtInstallArgs {
    /// Run the command instead of printing it.
    #[arg(long)]
    pub exec: bool,
    /// The libvirt domain name (default: `<name>-<build id>`).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 4096)]
    pub memory: u64,
    /// Virtual CPUs.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub vcpus: u32,
    /// Disk size in GiB (backed by the image, which stays unchanged).
    #[arg(long, value_name = "GIB", default_value_t = 20)]
    pub disk_size: u64,
    /// Ignition config passed through fw_cfg.
    #[arg(long, short = 'i', value_name = "FILE")]
    pub ignition: Option<PathBuf>,
}

/// `nosa build`.
#[derive(Debug, Args)]
pub struct BuildCmdArgs {
    /// Extra targets (image formats: qemu, metal, metal4k, openstack, live).
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Shared build flags.
    #[command(flatten)]
    pub common: BuildCommon,
    /// Rerun the compose nodes even if cached.
    #[arg(long)]
    pub force: bool,
    /// Use this version (build id) instead of the next automatic one.
    #[arg(long, value_name = "V")]
    pub version: Option<String>,
    /// Do not prune old builds after the build (by default the build file's keep-last-n are
    /// kept, as `nosa prune` does).
    #[arg(long)]
    pub skip_prune: bool,
}

/// `nosa fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Only this architecture.
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// Downloads at once (default: number of cores).
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,
    /// JSON lines on stdout, as `graph build --json`.
    #[arg(long)]
    pub json: bool,
}

/// `nosa init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Git URL, local git repository or plain directory of a nestos-config.
    pub source: String,
    /// Branch to clone.
    #[arg(long, short = 'b')]
    pub branch: Option<String>,
    /// Initialize even if the current directory is not empty.
    #[arg(long)]
    pub force: bool,
}

/// `nosa config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the flattened configuration: the manifest with includes resolved and
    /// arch-specific lists merged, and the flattened image.yaml under `image`.
    ///
    /// Example: `nosa config show --arch x86_64 | less`
    Show(ConfigShowArgs),
}

/// `nosa config show`.
#[derive(Debug, Args)]
pub struct ConfigShowArgs {
    /// Architecture (default: the first configured arch).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// JSON instead of YAML.
    #[arg(long)]
    pub json: bool,
}

/// `nosa graph ...`.
#[derive(Debug, Subcommand)]
pub enum GraphCommand {
    /// Build targets (default: the build file's default set).
    ///
    /// Example: `nosa graph build ostree-commit:x86_64 -j 4 --json`
    Build(BuildArgs),
    /// Show what would run and why, without running anything.
    ///
    /// Example: `nosa graph plan qemu`
    Plan(PlanArgs),
    /// Explain why NODE ran in the last build, or would run now.
    ///
    /// Example: `nosa graph why rootfs:x86_64`
    Why(WhyArgs),
    /// Print the graph as text, or Graphviz DOT.
    ///
    /// Example: `nosa graph show --dot | dot -Tsvg > graph.svg`
    Show(ShowArgs),
    /// List the files of NODE's last good output (path, mode, size, digest).
    ///
    /// Example: `nosa graph output overlay:15nestos`
    Output(OutputArgs),
}

/// `nosa graph output`.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// The node id.
    pub node: String,
    /// JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Flags shared by commands that select targets.
#[derive(Debug, Args, Clone)]
pub struct TargetArgs {
    /// Target names or node ids.
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Only this architecture (default: every arch the workdir configures).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
}

/// `nosa graph build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub select: TargetArgs,
    /// Nodes run at once (default: number of cores).
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,
    /// After a failure, still build the nodes that do not depend on it.
    #[arg(long)]
    pub keep_going: bool,
    /// Rerun the named targets even if cached.
    #[arg(long)]
    pub force: bool,
    /// JSON lines on stdout; the last line is the summary.
    #[arg(long)]
    pub json: bool,
    /// The remote cache.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// `nosa graph plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub select: TargetArgs,
    /// JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `nosa graph why`.
#[derive(Debug, Args)]
pub struct WhyArgs {
    /// The node id (or target name).
    pub node: String,
    /// Architecture whose graph to load (default: every configured arch).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `nosa graph show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Architecture whose graph to show (default: every configured arch).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// Graphviz DOT instead of text.
    #[arg(long)]
    pub dot: bool,
}

/// `nosa prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Builds to keep (default: the build file's keep-last-n, else 3).
    #[arg(long, value_name = "N", conflicts_with = "build")]
    pub keep_last_n: Option<u32>,
    /// Remove this build (even if it is the latest; not if it is tagged), instead of the
    /// builds beyond the newest N.
    #[arg(long, value_name = "ID")]
    pub build: Vec<String>,
    /// Report what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `nosa list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `nosa tag ...`.
#[derive(Debug, Subcommand)]
pub enum TagCommand {
    /// Point a tag at a build, making the tag or moving it.
    ///
    /// Example: `nosa tag update --build 42.20261207.dev.0 --tag stable`
    Update(TagUpdateArgs),
    /// Delete a tag (the build stays).
    ///
    /// Example: `nosa tag delete --tag stable`
    Delete(TagDeleteArgs),
    /// List the tags: name, build, when it was made.
    ///
    /// Example: `nosa tag list --json`
    List(TagListArgs),
}

/// `nosa tag update`.
#[derive(Debug, Args)]
pub struct TagUpdateArgs {
    /// The build the tag names (default: the latest).
    #[arg(long, value_name = "ID")]
    pub build: Option<String>,
    /// The tag's name.
    #[arg(long, value_name = "NAME")]
    pub tag: String,
    /// What the tag is for.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Tag a build that builds.json does not list.
    #[arg(long)]
    pub force: bool,
}

/// `nosa tag delete`.
#[derive(Debug, Args)]
pub struct TagDeleteArgs {
    /// The tag's name.
    #[arg(long, value_name = "NAME")]
    pub tag: String,
}

/// `nosa tag list`.
#[derive(Debug, Args)]
pub struct TagListArgs {
    /// JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `nosa meta`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["get", "set", "dump", "image_path"])))]
#[command(after_help = "\
Example: nosa meta --get ostree-commit --get images.ostree.sha256
Example: nosa meta --build 42.20261207.dev.0 --image-path qemu
Example: nosa meta --set summary='nightly for QA' --set coreos-assembler.image-genver=2
Example: nosa meta --dump

An invalid --set (v1's rules, docs/lifecycle.md) exits 2 and writes nothing.")]
pub struct MetaArgs {
    /// The build (default: the latest).
    #[arg(long, value_name = "ID")]
    pub build: Option<String>,
    /// The arch (default: the build's only or first arch).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// Print the value at KEY: a top-level key or a dotted path (`images.qemu.sha256`).
    #[arg(long, value_name = "KEY")]
    pub get: Vec<String>,
    /// Set KEY to VALUE (parsed as JSON when it is JSON, else a string); repeatable. Nothing is
    /// written unless the result is valid.
    #[arg(long, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Print the whole meta.json.
    #[arg(long)]
    pub dump: bool,
    /// Print the path of the image TYPE (qemu, metal, ...).
    #[arg(long, value_name = "TYPE")]
    pub image_path: Option<String>,
}

/// `nosa compress`.
#[derive(Debug, Args)]
pub struct CompressArgs {
    /// The build (default: the latest).
    #[arg(long, value_name = "ID")]
    pub build: Option<String>,
    /// Only this architecture.
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// The compressor (default: image.yaml's `compressor`, else gzip).
    #[arg(long, value_name = "NAME", value_parser = ["gzip", "xz", "zstd"])]
    pub compressor: Option<String>,
    /// The fastest level (gzip 1, xz 0, zstd 1) instead of the default (gzip 6, xz 9,
    /// zstd 10).
    #[arg(long)]
    pub fast: bool,
    /// Only these images (default: every image not marked skip-compression).
    #[arg(long = "artifact", value_name = "TYPE")]
    pub artifacts: Vec<String>,
    /// Nodes run at once (default: number of cores).
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,
    /// JSON lines on stdout (one per node, then the summary), as `nosa graph build --json`.
    #[arg(long)]
    pub json: bool,
}

/// `nosa uncompress`.
#[derive(Debug, Args)]
pub struct UncompressArgs {
    /// The build (default: the latest).
    #[arg(long, value_name = "ID")]
    pub build: Option<String>,
    /// Only this architecture.
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// Only these images (default: every compressed image).
    #[arg(long = "artifact", value_name = "TYPE")]
    pub artifacts: Vec<String>,
    /// Nodes run at once (default: number of cores).
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,
    /// JSON lines on stdout (one per node, then the summary), as `nosa graph build --json`.
    #[arg(long)]
    pub json: bool,
}

/// `nosa push-container`.
#[derive(Debug, Args)]
pub struct PushContainerArgs {
    /// Where to push: `HOST[:PORT]/REPO[:TAG]` for docker (only the tag may contain ':'
    /// after the host), a directory for dir, `PATH[:TAG]` for oci-archive, a path for
    /// docker-archive, `[DRIVER@ROOT+RUNROOT]NAME[:TAG]` (the store part optional) for
    /// containers-storage, `NAME[:TAG]` for docker-daemon. Without a tag the tag is
    /// `<buildid>-<arch>`.
    #[arg(value_name = "IMAGE[:TAG]")]
    pub image: String,
    /// The build (default: the latest).
    #[arg(long, value_name = "ID")]
    pub build: Option<String>,
    /// The arch (default: the host's).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// Registry credentials in containers-auth.json form
    /// (`{"auths": {"HOST[:PORT]": {"auth": "<base64 of user:password>"}}}`).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Plain HTTP, and no TLS verification.
    #[arg(long)]
    pub insecure: bool,
    /// Where IMAGE is: docker (a registry), dir, oci-archive (nosa writes these three),
    /// docker-archive, containers-storage, docker-daemon (these run skopeo).
    #[arg(long, value_name = "T", default_value = "docker", value_parser = [
        "docker", "dir", "docker-archive", "containers-storage", "docker-daemon", "oci-archive",
    ])]
    pub transport: String,
}

/// `nosa runc`.
#[derive(Debug, Args)]
#[command(after_help = "\
Example: nosa runc
Example: nosa runc -- cat /etc/os-release
Example: nosa runc --build 42.20261207.dev.0 -- rpm -qa

It runs the commit's tree (what the build's container image holds), not a booted system:
no systemd; / and /usr read-only, /etc a writable copy, /var /tmp /run empty tmpfs.
The exit status is the command's.")]
pub struct RuncArgs {
    /// The build (default: the latest).
    #[arg(long, value_name = "ID")]
    pub build: Option<String>,
    /// The arch (default: the host's).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// The command and its arguments (default: an interactive shell).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `nosa shell`.
#[derive(Debug, Args)]
#[command(after_help = "\
Example: nosa shell
Example: nosa shell -- sh -c 'nosa list && ls builds/latest/'

In the workdir, with NOSA_WORKDIR set and this nosa's directory first on PATH.
The exit status is the command's.")]
pub struct ShellArgs {
    /// The command and its arguments (default: an interactive shell).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `nosa clean`.
#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Also delete the cache (cache/store).
    #[arg(long)]
    pub all: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        super::Cli::command().debug_assert();
    }

    /// Every command people run says in its `--help` how it is used.
    #[test]
    fn every_command_has_an_example() {
        fn walk(cmd: &mut clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in cmd.get_subcommands_mut() {
                if sub.is_hide_set() || sub.get_name() == "help" {
                    continue;
                }
                let path = format!("{path} {}", sub.get_name());
                let help = sub.render_long_help().to_string();
                if !help.contains("Example: `") && !help.contains("Example: nosa ") {
                    missing.push(path.clone());
                }
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&mut super::Cli::command(), "nosa", &mut missing);
        assert!(missing.is_empty(), "no example in --help: {missing:?}");
    }
}

/// `nosa exec-node`.
#[derive(Debug, Args)]
pub struct ExecNodeArgs {
    /// The node's description, `node.json`, at the top of its input root.
    pub node: PathBuf,
}
