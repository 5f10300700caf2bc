//! Embeds the web UI's third-party code: uPlot, pinned by `web/package-lock.json` and installed by
//! npm into `web/node_modules` (it is never copied into the repository). When it is not installed
//! and `npm` is on the PATH, `npm ci` installs it; when that is impossible (no npm, no network) the
//! build still succeeds with a warning and the UI serves its table view without the graph.
//!
//! Writes `$OUT_DIR/uplot.rs`: `UPLOT_JS` and `UPLOT_CSS`, each `Some(bytes)` or `None`.

use std::path::{Path, PathBuf};
use std::process::Command;

const UPLOT_DIST: &str = "web/node_modules/uplot/dist";
const FILES: [(&str, &str); 2] = [("UPLOT_JS", "uPlot.iife.min.js"), ("UPLOT_CSS", "uPlot.min.css")];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let dist = manifest.join(UPLOT_DIST);
    println!("cargo:rerun-if-changed=web/package-lock.json");
    println!("cargo:rerun-if-env-changed=STRATA_WEB_NPM");

    let installed = || FILES.iter().all(|(_, f)| dist.join(f).is_file());
    let mut why_missing = String::new();
    if !installed() {
        why_missing = match npm_ci(&manifest) {
            Ok(()) if installed() => String::new(),
            Ok(()) => format!("`npm ci` did not produce {UPLOT_DIST}"),
            Err(e) => e,
        };
    }
    // A path that does not exist would rerun this script (and rebuild the binary) on every build:
    // without uPlot, watch web/, where an install adds files.
    if why_missing.is_empty() {
        println!("cargo:rerun-if-changed={UPLOT_DIST}");
    } else {
        println!("cargo:rerun-if-changed=web");
    }
    let mut code = String::new();
    for (name, file) in FILES {
        let path = dist.join(file);
        if why_missing.is_empty() {
            code.push_str(&format!("pub const {name}: Option<&[u8]> = Some(include_bytes!({:?}));\n", path.display()));
        } else {
            code.push_str(&format!("pub const {name}: Option<&[u8]> = None;\n"));
        }
    }
    if !why_missing.is_empty() {
        println!(
            "cargo:warning=the web UI is built without uPlot ({why_missing}); its graph view needs \
             `npm ci --prefix web` and a rebuild"
        );
    }
    if let Err(e) = std::fs::write(out.join("uplot.rs"), code) {
        // Without the generated file the crate cannot compile; say why.
        println!("cargo:warning=cannot write {}: {e}", out.join("uplot.rs").display());
        std::process::exit(1);
    }
}

/// Runs `npm ci --prefix web --ignore-scripts` (the lock file pins uPlot and its integrity hash).
/// `STRATA_WEB_NPM=0` skips it.
fn npm_ci(manifest: &Path) -> Result<(), String> {
    if std::env::var("STRATA_WEB_NPM").is_ok_and(|v| v == "0") {
        return Err("STRATA_WEB_NPM=0".into());
    }
    let Some(npm) = find_on_path("npm") else {
        return Err("npm is not on the PATH".into());
    };
    let status = Command::new(npm)
        .current_dir(manifest)
        .args(["ci", "--prefix", "web", "--ignore-scripts", "--no-audit", "--no-fund"])
        .args(["--fetch-retries=1", "--fetch-timeout=30000"])
        // Cargo reads a build script's stdout for instructions; npm's report goes to stderr.
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| format!("cannot run npm: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`npm ci --prefix web` failed: {status}"))
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file())
}
