//! The seed README's curl examples, run verbatim by `tests/seed/rest.sh` against
//! `allsource serve` started with no address flag (the default 127.0.0.1:8080).

use std::process::Command;

use super::Server;

#[test]
fn seed_curl_examples_run_verbatim() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let server = Server::start_on(dir.path(), None, &[], &[]);
    assert_eq!(
        server.base, "http://127.0.0.1:8080",
        "the default address is taken; this test needs port 8080 free"
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/seed/rest.sh");
    let output = Command::new("bash")
        .arg(script)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed:\n{stderr}\nserver log:\n{}",
        server.log()
    );
    assert!(
        stderr.contains("all seed REST examples answered as expected"),
        "{stderr}"
    );
}
