"""Fixtures of the interop suite: a real `allsource serve` process per test, on free
loopback ports, with a fresh data directory.

The binary is `$ALLSOURCE_BIN` (set by the cargo test that runs this suite), else
`target/debug/allsource`.
"""

import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Server:
    """A running `allsource serve`: `http` is `http://HOST:PORT`, `flight` is
    `grpc://HOST:PORT`."""

    def __init__(self, data_dir, *flags, env=None):
        binary = os.environ.get("ALLSOURCE_BIN", str(ROOT / "target" / "debug" / "allsource"))
        command = [
            binary,
            "serve",
            "--data-dir",
            str(data_dir),
            "--http-addr",
            "127.0.0.1:0",
            "--flight-addr",
            "127.0.0.1:0",
            *flags,
        ]
        environment = dict(os.environ, RUST_LOG="info", NO_COLOR="1", **(env or {}))
        self.process = subprocess.Popen(
            command, stderr=subprocess.PIPE, text=True, env=environment
        )
        self.log = []
        deadline = time.monotonic() + 60
        fields = None
        for line in self.process.stderr:
            line = ANSI.sub("", line)
            self.log.append(line)
            if "serving" in line:
                fields = dict(re.findall(r"(\w+)=(\S+)", line))
                break
            if time.monotonic() > deadline:
                break
        if not fields or "http" not in fields or "flight" not in fields:
            self.process.kill()
            raise RuntimeError("the server did not start:\n" + "".join(self.log))
        self.http = "http://" + fields["http"]
        self.flight = "grpc://" + fields["flight"]
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.process.stderr:
            self.log.append(ANSI.sub("", line))

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def server(tmp_path):
    running = Server(tmp_path / "data")
    yield running
    running.stop()
    assert running.process.returncode == 0, "".join(running.log)
