//! Helpers shared by the workspace's tests, so that each exists once: where the checkout and
//! the fixture distro are, running a tool that fails naming its Debian package, writing OS
//! trees, the `ostree` CLI, the ostree-ext import tool, and the remote cache servers (nginx,
//! BuildGrid) and build farm (buildbox-casd). A dev-dependency only: no library crate depends on it.

mod buildgrid;
mod casd;
mod fs;
mod net;
mod nginx;
mod os_tree;
mod ostree;
mod paths;
mod tools;

pub use buildgrid::{BuildGrid, bgd};
pub use casd::Casd;
pub use fs::{TreeBuilder, copy_dir, cp_a};
pub use nginx::Nginx;
pub use os_tree::{commit_request, sample_os_tree};
pub use ostree::{Entry, ostree, ostree_ext_check, ostree_ls};
pub use paths::{fixture_packages, fixture_repo, workspace_root};
pub use tools::{ignition_validate, need, run};
