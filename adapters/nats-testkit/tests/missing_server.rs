//! Without a nats-server on PATH the harness fails the test and says what to do: a test
//! that skipped itself would look like one that passed. Its own test binary, because it
//! empties PATH for the whole process.

use dealreg_nats_testkit::NatsServer;

#[test]
fn a_missing_server_fails_loudly_and_names_scripts_setup() {
    let empty = tempfile::tempdir().expect("temp dir");
    std::env::set_var("PATH", empty.path());
    let Err(panic) = std::panic::catch_unwind(NatsServer::start) else {
        panic!("a server started with an empty PATH");
    };
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(message.contains("scripts/setup"), "{message}");
}
