//! Stamps the binary with the commit it was built from (`tally --version`), so that a
//! benchmark's report names the code that ran, not whatever the checkout holds when it
//! runs (tally-loadgen reads it from here).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let sha = match git(&["rev-parse", "--short", "HEAD"]) {
        Some(sha) => {
            // Uncommitted changes to tracked files: say so.
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty { format!("{sha}-dirty") } else { sha }
        }
        None => "unknown".to_string(),
    };
    println!("cargo:rustc-env=TALLY_BUILD_SHA={sha}");
    // Again when the commit or the sources change (a directory is watched whole).
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
    }
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=../engine/src");
}
