//! The interop suite: real clients (pyarrow Flight, the ADBC Flight SQL driver,
//! Polars, the `gql` GraphQL client, headless Chromium on GraphiQL) against the real
//! `allsource serve` binary, run with pytest.
//!
//! The Python tests live beside this file (`tests/interop/*.py`); `.ci/run` installs
//! their dependencies (`pip install pyarrow polars adbc-driver-flightsql
//! adbc-driver-manager pytest 'gql[websockets,requests]'`, `apt-get install
//! chromium`). Run them alone with
//! `ALLSOURCE_BIN=target/debug/allsource python3 -m pytest tests/interop`.

use std::path::Path;
use std::process::Command;

#[test]
fn python_clients_against_the_server() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop");
    let output = Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--color=no"])
        .arg(&here)
        .env("ALLSOURCE_BIN", env!("CARGO_BIN_EXE_allsource"))
        .current_dir(&here)
        .output()
        .unwrap_or_else(|e| panic!("running python3 -m pytest: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the interop suite failed (pip install pyarrow polars adbc-driver-flightsql \
         adbc-driver-manager pytest 'gql[websockets,requests]'; apt-get install \
         chromium):\n{stdout}\n{stderr}"
    );
    // Every test ran: pytest reports skips, and a skipped interop test is no pass.
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.contains("passed") && !summary.contains("skipped"),
        "{stdout}"
    );
    println!("{stdout}");
}
