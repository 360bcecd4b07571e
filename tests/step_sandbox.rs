//! `[[step]]`s in bubblewrap: the host is read-only (a write outside the step's directory
//! fails and leaves nothing), there is no network unless the step says `network = true`, and
//! a networked step is kept out of the shared cache; `trace` and `network` together are
//! refused at their line.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

use common::Workdir;
use nosa_testkit::Nginx;

#[test]
fn a_step_cannot_write_outside_its_directory() {
    // Not under /tmp, which a step sees as its own empty tmpfs.
    let outside = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let target = outside.path().join("planted");
    let toml = format!(
        "[[step]]\nname = \"escape\"\nrun = \"mkdir -p o && echo x > o/ok && echo x > {}\"\noutputs = [\"o\"]\n",
        target.display()
    );
    let w = Workdir::new(&toml, &[]);
    let r = w.build(&[]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.ids("failed"), ["step:escape"], "{}", r.stderr);
    assert!(!target.exists(), "the host is read-only to a step");
    let log = fs_err::read_to_string(w.path().join("cache/store/logs/step_escape.log")).unwrap();
    assert!(log.contains("Read-only file system"), "{log}");
}

/// `bash -c 'echo hi > /dev/tcp/127.0.0.1/PORT'` against a listener of this test.
fn dial(port: u16) -> String {
    format!(
        "[[step]]\nname = \"dial\"\nrun = \"bash -c 'echo hi > /dev/tcp/127.0.0.1/{port}' && mkdir -p o && echo done > o/r\"\noutputs = [\"o\"]\n"
    )
}

#[test]
fn a_step_has_no_network_unless_it_asks_and_then_is_not_shared() {
    nosa_testkit::need("bash", "bash");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();

    let w = Workdir::new(&dial(port), &[]);
    let r = w.build(&["--no-remote"]);
    assert_eq!(r.ids("failed"), ["step:dial"], "{}", r.stderr);
    assert!(listener.accept().is_err(), "nothing reached the listener");

    // With network = true it connects; a remote cache neither answers for it nor takes it.
    let cache = Nginx::start();
    let toml = format!(
        "[cache]\nremote = \"{}\"\n{}network = true\n",
        cache.url,
        dial(port)
    );
    for round in 0..2 {
        let w = Workdir::new(&toml, &[]);
        let r = w.build(&[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.ids("ran"), ["step:dial"], "round {round}: {}", r.stderr);
        assert_eq!(w.read("o/r"), "done\n");
        // The step connected and wrote before the build ended: the connection is waiting.
        listener.set_nonblocking(false).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hi\n");
        listener.set_nonblocking(true).unwrap();
    }
    let uploaded = walkdir::WalkDir::new(cache.cas())
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .count();
    assert_eq!(uploaded, 0, "a networked step is not uploaded");
}

#[test]
fn trace_and_network_together_are_refused_at_their_line() {
    let w = Workdir::new(
        "[[step]]\nname = \"both\"\nrun = \"true\"\ntrace = true\nnetwork = true\n",
        &[],
    );
    let r = w.build(&[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("step both sets both trace and network")
            && r.stderr.contains("nestos.build.toml:2"),
        "{}",
        r.stderr
    );
}
