//! `dealreg import` against the auditor's key (issue 35 item 1): an export whose signed
//! checkpoints were stripped, or re-signed with a forger's own key, is refused with
//! `--public-key` (nothing written, no store left behind), and accepted without one only as
//! what it is: unauthenticated. A genuine export with the auditor's key (or the auditor's
//! checkpoints file) is imported and reported verified against that key; without a key the
//! word "verified" never appears.

mod support;

use support::dealreg;

use std::path::{Path, PathBuf};
use std::process::Output;

const UNAUTHENTICATED: &str =
    "authenticity not checked: no public key given (pass --public-key or --checkpoints)";

fn path(p: &Path) -> String {
    p.to_string_lossy().to_string()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Everything the job printed, stdout then stderr.
fn printed(out: &Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

/// A new signing key at `key` (the store is not opened), and its public key.
fn keygen(key: &Path) -> String {
    let out = dealreg(
        &key.with_extension("unused.db"),
        &["audit", "keygen", "--out", &path(key)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

/// Signs the head of `store` with `key`, appending the checkpoint to `checkpoints`.
fn checkpoint(store: &Path, key: &Path, checkpoints: &Path) {
    let out = dealreg(
        store,
        &[
            "audit",
            "checkpoint",
            "--key",
            &path(key),
            "--out",
            &path(checkpoints),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Exports `store` to `export` carrying `checkpoints`.
fn export(store: &Path, checkpoints: &Path, export: &Path) {
    let out = dealreg(
        store,
        &[
            "export",
            "--out",
            &path(export),
            "--checkpoints",
            &path(checkpoints),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The demo's log, a checkpoint of it signed with the auditor's key, and its export
/// carrying that checkpoint.
struct Genuine {
    dir: tempfile::TempDir,
    original: PathBuf,
    public_key: String,
    checkpoints: PathBuf,
    export: PathBuf,
}

fn genuine() -> Genuine {
    let dir = tempfile::tempdir().expect("temp dir");
    let original = support::demo_store(&dir);
    let key = dir.path().join("auditor.key");
    let public_key = keygen(&key);
    let checkpoints = dir.path().join("auditor-checkpoints.jsonl");
    checkpoint(&original, &key, &checkpoints);
    let file = dir.path().join("log.jsonl");
    export(&original, &checkpoints, &file);
    Genuine {
        dir,
        original,
        public_key,
        checkpoints,
        export: file,
    }
}

/// No store file of `target` exists (the store, its WAL, views and keys).
fn assert_nothing_left(target: &Path) {
    for suffix in ["", "-wal", "-shm", "-views", "-keys"] {
        let mut file = target.to_path_buf().into_os_string();
        file.push(suffix);
        assert!(
            !Path::new(&file).exists(),
            "{} is left behind",
            Path::new(&file).display()
        );
    }
}

#[test]
fn a_stripped_export_is_refused_with_the_auditors_key() {
    let genuine = genuine();
    // The checkpoint lines removed and the end line's count mended, as a forger would:
    // the file reads back as a whole export with no checkpoint.
    let text = std::fs::read_to_string(&genuine.export).expect("read");
    let mut stripped_lines = Vec::new();
    let mut removed = 0;
    for line in text.lines() {
        let mut value: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        match value["kind"].as_str() {
            Some("checkpoint") => removed += 1,
            Some("end") => {
                value["checkpoints"] = serde_json::json!(0);
                stripped_lines.push(value.to_string());
            }
            _ => stripped_lines.push(line.to_string()),
        }
    }
    assert_eq!(removed, 1, "the export carried the auditor's checkpoint");
    let stripped = genuine.dir.path().join("stripped.jsonl");
    std::fs::write(&stripped, stripped_lines.join("\n") + "\n").expect("write");

    // With the auditor's key: refused, saying why and what to do, nothing written.
    let target = genuine.dir.path().join("stripped-with-key.db");
    let out = dealreg(
        &target,
        &[
            "import",
            &path(&stripped),
            "--public-key",
            &genuine.public_key,
        ],
    );
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{}", printed(&out));
    assert!(said.contains("no signed checkpoint"), "{said}");
    assert!(said.contains(&genuine.public_key), "{said}");
    assert!(said.contains("--checkpoints"), "what to do: {said}");
    assert!(said.contains("nothing was written"), "{said}");
    assert!(!said.contains("imported "), "{said}");
    assert_nothing_left(&target);

    // Without a key it is imported, and said to be unauthenticated.
    let target = genuine.dir.path().join("stripped-without-key.db");
    let out = dealreg(&target, &["import", &path(&stripped)]);
    assert!(out.status.success(), "{}", printed(&out));
    assert!(printed(&out).contains(UNAUTHENTICATED), "{}", printed(&out));
    assert!(!printed(&out).contains("verified"), "{}", printed(&out));

    // The auditor's own checkpoints file stands in for the stripped ones: the log is the
    // one the auditor signed.
    let target = genuine.dir.path().join("stripped-with-checkpoints.db");
    let out = dealreg(
        &target,
        &[
            "import",
            &path(&stripped),
            "--checkpoints",
            &path(&genuine.checkpoints),
        ],
    );
    assert!(out.status.success(), "{}", printed(&out));
    assert!(
        stderr(&out).contains(&format!(
            "authenticity verified against public key {}",
            genuine.public_key
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_export_re_signed_with_a_forgers_key_is_refused_with_the_auditors_key() {
    let genuine = genuine();
    // The forger's own log (written from scratch, every chain consistent), signed with
    // the forger's own key and exported with that checkpoint.
    let forged = genuine.dir.path().join("forged.db");
    let demo = dealreg(&forged, &["demo", "--seed", "7"]);
    assert!(demo.status.success(), "{}", stderr(&demo));
    let forger_key = genuine.dir.path().join("forger.key");
    let forger_public = keygen(&forger_key);
    assert_ne!(forger_public, genuine.public_key);
    let forger_checkpoints = genuine.dir.path().join("forger-checkpoints.jsonl");
    checkpoint(&forged, &forger_key, &forger_checkpoints);
    let file = genuine.dir.path().join("forged.jsonl");
    export(&forged, &forger_checkpoints, &file);

    // With the auditor's key: refused, the checkpoint named, nothing written.
    let target = genuine.dir.path().join("forged-with-key.db");
    let out = dealreg(
        &target,
        &["import", &path(&file), "--public-key", &genuine.public_key],
    );
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{}", printed(&out));
    assert!(
        said.contains("checkpoint(s) 1 of the file are signed by another key than"),
        "{said}"
    );
    assert!(said.contains(&genuine.public_key), "{said}");
    assert!(said.contains("nothing was written"), "{said}");
    assert!(!said.contains("imported "), "{said}");
    assert_nothing_left(&target);

    // With the auditor's checkpoints file instead of the key: refused too (the forger's
    // checkpoint is not signed with the key of that file, and the auditor's checkpoint
    // does not match the forged events).
    let target = genuine.dir.path().join("forged-with-checkpoints.db");
    let out = dealreg(
        &target,
        &[
            "import",
            &path(&file),
            "--checkpoints",
            &path(&genuine.checkpoints),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", printed(&out));
    assert!(
        stderr(&out).contains("nothing was written"),
        "{}",
        stderr(&out)
    );
    assert_nothing_left(&target);

    // Without a key it is accepted (its own checkpoint matches its events), but reported
    // as unauthenticated, never as verified.
    let target = genuine.dir.path().join("forged-without-key.db");
    let out = dealreg(&target, &["import", &path(&file)]);
    assert!(out.status.success(), "{}", printed(&out));
    assert!(printed(&out).contains(UNAUTHENTICATED), "{}", printed(&out));
    assert!(!printed(&out).contains("verified"), "{}", printed(&out));
}

#[test]
fn a_genuine_export_with_the_auditors_key_is_imported_and_reported_verified() {
    let genuine = genuine();
    let target = genuine.dir.path().join("with-key.db");
    let out = dealreg(
        &target,
        &[
            "import",
            &path(&genuine.export),
            "--public-key",
            &genuine.public_key,
        ],
    );
    assert!(out.status.success(), "{}", printed(&out));
    let said = stderr(&out);
    assert!(
        said.contains(&format!(
            "authenticity verified against public key {}",
            genuine.public_key
        )),
        "{said}"
    );
    assert!(!said.contains("authenticity not checked"), "{said}");
    assert_eq!(
        stdout(&dealreg(&genuine.original, &["events"])),
        stdout(&dealreg(&target, &["events"]))
    );

    // The auditor's checkpoints file names the key as well.
    let target = genuine.dir.path().join("with-checkpoints.db");
    let out = dealreg(
        &target,
        &[
            "import",
            &path(&genuine.export),
            "--checkpoints",
            &path(&genuine.checkpoints),
        ],
    );
    assert!(out.status.success(), "{}", printed(&out));
    assert!(
        stderr(&out).contains(&format!(
            "authenticity verified against public key {}",
            genuine.public_key
        )),
        "{}",
        stderr(&out)
    );

    // A key that is not 64 hex digits is an error before anything is written.
    let target = genuine.dir.path().join("bad-key.db");
    let out = dealreg(
        &target,
        &["import", &path(&genuine.export), "--public-key", "abc"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", printed(&out));
    assert!(stderr(&out).contains("--public-key"), "{}", stderr(&out));
    assert_nothing_left(&target);
}

#[test]
fn without_a_key_the_output_never_says_verified() {
    let genuine = genuine();
    let target = genuine.dir.path().join("without-key.db");
    let out = dealreg(&target, &["import", &path(&genuine.export)]);
    assert!(out.status.success(), "{}", printed(&out));
    let said = printed(&out);
    assert!(said.contains(UNAUTHENTICATED), "{said}");
    assert!(!said.to_lowercase().contains("verified"), "{said}");
    // What was checked is still said, as what it is.
    assert!(said.contains("hash chains are intact"), "{said}");
    assert_eq!(
        stdout(&dealreg(&genuine.original, &["events"])),
        stdout(&dealreg(&target, &["events"]))
    );
}
