//! Local ports for the servers the tests start.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A port of 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something listens on `port` of 127.0.0.1; after `limit`, fails with what
/// `log` says then (the server's log).
pub fn wait_listening(port: u16, what: &str, limit: Duration, log: impl Fn() -> String) {
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < limit,
            "{what} did not listen on port {port} within {} s: {}",
            limit.as_secs(),
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
