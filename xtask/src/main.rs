//! Developer tasks (`cargo xtask ...`): building the fixture distro.
fn main() {}
