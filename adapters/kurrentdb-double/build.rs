//! Generates the gRPC server side of KurrentDB's protocol from the `.proto` files that the
//! `kurrentdb` client crate itself ships (its `protos/` folder), so the double speaks exactly
//! the messages of the client version it is tested with, and no copy of them lives in this
//! repository to drift.
//!
//! Where those files are: `KURRENTDB_PROTOS_DIR` if set, otherwise the source folder of the
//! `kurrentdb` package that `cargo metadata` reports (which follows vendoring and source
//! replacement, unlike a guess at `~/.cargo/registry`; it runs offline first). No `protoc` needs to be installed:
//! `protoc-bin-vendored` brings one, with the well-known types (`google/protobuf/*.proto`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The client version whose protocol is generated; keep in step with the exact pin of
/// `kurrentdb` in Cargo.toml's dev-dependencies.
const KURRENTDB_VERSION: &str = "1.2.0";

/// The services the double serves. `shared.proto`, `status.proto` and `code.proto` come in
/// through their imports.
const PROTOS: &[&str] = &["streams.proto", "serverfeatures.proto", "gossip.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=KURRENTDB_PROTOS_DIR");

    let protos_dir = match std::env::var_os("KURRENTDB_PROTOS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => kurrentdb_protos_dir()?,
    };
    let files: Vec<PathBuf> = PROTOS.iter().map(|f| protos_dir.join(f)).collect();
    for file in &files {
        if !file.is_file() {
            return Err(format!("missing {}", file.display()).into());
        }
        println!("cargo:rerun-if-changed={}", file.display());
    }

    // prost-build runs the compiler named by PROTOC. Setting it here touches only this
    // build script's process.
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    let includes = [protos_dir, protoc_bin_vendored::include_path()?];

    tonic_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_protos(&files, &includes)?;
    Ok(())
}

/// The `protos/` folder of the `kurrentdb` package in this workspace's resolved graph.
fn kurrentdb_protos_dir() -> Result<PathBuf, Box<dyn std::error::Error>> {
    // Offline first: the outer build has usually fetched every package of the workspace
    // already. A build of this crate alone (`cargo build -p`) on a fresh machine may not
    // have the other members' packages, and cargo metadata wants them all; then it may
    // fetch them from the registry.
    let metadata = match cargo_metadata(true) {
        Ok(metadata) => metadata,
        Err(offline) => {
            cargo_metadata(false).map_err(|online| format!("{offline}\n(then online) {online}"))?
        }
    };
    let packages = metadata["packages"]
        .as_array()
        .ok_or("no packages in cargo metadata")?;
    let manifest = packages
        .iter()
        .find(|p| p["name"] == "kurrentdb" && p["version"] == KURRENTDB_VERSION)
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or_else(|| format!("kurrentdb {KURRENTDB_VERSION} is not in the resolved graph"))?;
    let root = Path::new(manifest)
        .parent()
        .ok_or("manifest_path has no parent")?;
    Ok(root.join("protos"))
}

/// `cargo metadata` of this workspace, for this build's target platform only: without
/// `--filter-platform` cargo wants the sources of every platform's dependencies (Android's,
/// Windows'), which a Linux build never fetched. `--locked`: it reads the lock file the
/// outer build resolved and never rewrites it.
fn cargo_metadata(offline: bool) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR unset")?;
    let target = std::env::var("TARGET")?;
    let mut command = Command::new(cargo);
    command
        .current_dir(&manifest_dir)
        .args(["metadata", "--format-version", "1", "--locked"])
        .args(["--filter-platform", &target]);
    if offline {
        command.arg("--offline");
    }
    let output = command.output()?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed (KURRENTDB_PROTOS_DIR may name the kurrentdb crate's protos/ instead): {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}
