//! An HTTP cache server for the remote cache's tests and benchmark: Debian's nginx.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Debian's nginx serving an HTTP cache in Bazel's layout (WebDAV PUT) from a temporary
/// directory, on a free port of 127.0.0.1; killed when dropped.
pub struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    /// The cache's base URL (`http://127.0.0.1:PORT/nosa`).
    pub url: String,
}

impl Nginx {
    /// Starts it; fails naming the Debian package when nginx is missing.
    pub fn start() -> Nginx {
        crate::need("nginx", "nginx");
        let dir = tempfile::tempdir().unwrap();
        let port = crate::net::free_port();
        let d = dir.path().display();
        fs_err::create_dir_all(dir.path().join("cache")).unwrap();
        let conf = format!(
            "user root;\n\
             daemon off;\n\
             master_process off;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
               access_log off;\n\
               client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n\
               scgi_temp_path {d}/scgi;\n\
               server {{\n\
                 listen 127.0.0.1:{port};\n\
                 root {d}/cache;\n\
                 client_max_body_size 0;\n\
                 location / {{\n\
                   dav_methods PUT;\n\
                   create_full_put_path on;\n\
                   dav_access user:rw group:r all:r;\n\
                 }}\n\
               }}\n\
             }}\n"
        );
        fs_err::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdin(Stdio::null())
            .spawn()
            .expect("start nginx (Debian's nginx package)");
        crate::net::wait_listening(port, "nginx", Duration::from_secs(20), || {
            fs_err::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        });
        Nginx {
            child,
            url: format!("http://127.0.0.1:{port}/nosa"),
            dir,
        }
    }

    /// The directory of the cache's `cas/` entries.
    pub fn cas(&self) -> PathBuf {
        self.dir.path().join("cache/nosa/cas")
    }

    /// Kills the server (as a crash would).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
    }
}
