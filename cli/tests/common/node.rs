//! A `tally serve` node process on free loopback ports, stopped (or killed) when dropped.

use super::s;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct Served {
    /// `None` once stopped.
    pub child: Option<Child>,
    /// Binary ingest.
    pub addr: String,
    pub http: String,
}

/// Starts `tally serve` on a free port and reads the address it prints.
pub fn serve(app: &std::path::Path, node: &std::path::Path, store: &str) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args([
            "serve",
            "--app",
            s(app),
            "--config",
            s(node),
            "--store",
            store,
            "--ingest",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let rest =
        line.trim().strip_prefix("listening ingest=").unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let (addr, http) = rest.split_once(" http=").unwrap();
    Served { child: Some(child), addr: addr.to_string(), http: http.to_string() }
}

impl Served {
    /// SIGTERM, then the exit status and stderr.
    pub fn stop(mut self) -> (Option<i32>, String) {
        let child = self.child.take().expect("running");
        let pid = child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let out = child.wait_with_output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Drop for Served {
    /// A test that failed before stopping its node still leaves no node running.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}
