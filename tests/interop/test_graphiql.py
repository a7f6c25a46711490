"""GraphiQL in headless Chromium (Debian's `chromium`), driven over the DevTools
protocol, with every host but loopback unresolvable: the page, its scripts and styles
all come from the server, the editor renders, and a query and a subscription run from
the page show the server's answers. Screenshots of the page go to
`$ALLSOURCE_SCREENSHOT_DIR`, else beside the test's data.

Chromium is `$CHROMIUM`, else `/usr/bin/chromium` (`apt-get install chromium`).
"""

import base64
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

# Headless, no background traffic, and every name but the loopback address fails to
# resolve: nothing can be fetched from outside.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--window-size=1280,900",
    "--remote-debugging-port=0",
]


class Browser:
    """One Chromium process and a DevTools session on its first page."""

    def __init__(self):
        assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
        self.profile = tempfile.TemporaryDirectory()
        # Its own process group: Chromium's helper processes are stopped with it.
        self.process = subprocess.Popen(
            [CHROMIUM, *FLAGS, "--user-data-dir=" + self.profile.name, "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        port_file = Path(self.profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            assert self.process.poll() is None, "chromium exited at start"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as response:
            pages = [t for t in json.load(response) if t["type"] == "page"]
        self.connection = connect(pages[0]["webSocketDebuggerUrl"], max_size=None)
        self.next_id = 0
        self.events = []

    def __enter__(self):
        self.socket = self.connection.__enter__()
        return self

    def __exit__(self, *failure):
        self.connection.__exit__(*failure)
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        # The helpers may still be going away; give them a moment to let go.
        for _ in range(50):
            try:
                self.profile.cleanup()
                break
            except OSError:
                time.sleep(0.1)

    def call(self, method, **params):
        """Send one command; its result. Events that arrive meanwhile are kept."""
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]
            self.events.append(message)

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait_for(self, expression, what, seconds=60):
        deadline = time.monotonic() + seconds
        while not self.evaluate(expression):
            assert time.monotonic() < deadline, f"{what} did not happen in {seconds} s"
            time.sleep(0.2)



def post(server, event):
    """Append one event over REST."""
    request = urllib.request.Request(
        server.http + "/api/v1/events",
        data=json.dumps(event).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 201


def screenshot(browser, path):
    """Save the page as a PNG of the window's size."""
    png = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    size = (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big"))
    assert size == (1280, 900), size
    path.write_bytes(png)


def test_graphiql_renders_and_runs_a_query_with_no_outside_network(server, tmp_path):
    event = {
        "event_type": "user.created",
        "entity_id": "user-1",
        "payload": {"name": "Ada Lovelace"},
    }
    post(server, event)

    with Browser() as browser:
        browser.call("Network.enable")
        browser.call("Page.enable")
        browser.call("Runtime.enable")
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            width=1280,
            height=900,
            deviceScaleFactor=1,
            mobile=False,
        )
        browser.call("Page.navigate", url=server.http + "/graphql")
        # The editor: GraphiQL's container with its query editor holding the example.
        browser.wait_for(
            "!!document.querySelector('.graphiql-container .graphiql-query-editor .CodeMirror')",
            "the query editor rendering",
        )
        editor_text = browser.evaluate(
            "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue()"
        )
        assert "events(first: 10" in editor_text
        # Run the example from the page; the answer shows the appended event.
        browser.evaluate("document.querySelector('.graphiql-execute-button').click()")
        browser.wait_for(
            "(document.querySelector('.result-window') || {}).innerText?.includes('Ada Lovelace')",
            "the query's result showing",
        )
        result_text = browser.evaluate("document.querySelector('.result-window').innerText")
        assert '"entityId": "user-1"' in result_text, result_text
        shots = Path(os.environ.get("ALLSOURCE_SCREENSHOT_DIR", tmp_path))
        screenshot(browser, shots / "graphiql-query.png")

        # A subscription from the page, over the page's WebSocket: an event appended
        # after it started shows up in the result pane. GraphiQL takes an edit into
        # its state a moment after it is made, so the click waits for that.
        browser.evaluate(
            "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue("
            "'subscription { events(filter: {eventType: \"user.renamed\"}, fromPosition: 0)"
            " { entityId payload } }')"
        )
        # GraphiQL stores the edited query once its state has taken it.
        browser.wait_for(
            "(localStorage.getItem('graphiql:query') || '').startsWith('subscription')",
            "GraphiQL taking the edited query",
        )
        browser.evaluate("document.querySelector('.graphiql-execute-button').click()")
        deadline = time.monotonic() + 60
        while not any(
            e["method"] == "Network.webSocketFrameSent"
            and '"subscribe"' in e["params"]["response"]["payloadData"]
            for e in browser.events
        ):
            assert time.monotonic() < deadline, "the page sent no subscription"
            browser.call("Runtime.evaluate", expression="0")
            time.sleep(0.1)
        post(server, {**event, "event_type": "user.renamed", "payload": {"name": "Countess"}})
        browser.wait_for(
            "document.querySelector('.result-window').innerText.includes('Countess')",
            "the subscription's event showing",
        )

        screenshot(browser, shots / "graphiql-subscription.png")

        browser.call("Runtime.evaluate", expression="0")  # collect the events sent so far
        requests = [
            e["params"]["request"]["url"]
            for e in browser.events
            if e["method"] == "Network.requestWillBeSent"
        ]
        failures = [e["params"] for e in browser.events if e["method"] == "Network.loadingFailed"]
        exceptions = [
            e["params"] for e in browser.events if e["method"] == "Runtime.exceptionThrown"
        ]

    # Every request went to the server (fonts are inlined as data: URLs), every one
    # loaded, and no script threw.
    assert requests, "no request was seen"
    outside = [u for u in requests if not u.startswith((server.http, "data:"))]
    assert outside == [], outside
    for asset in ("graphiql.min.js", "graphiql.min.css", "react.production.min.js"):
        assert any(url.endswith("/graphql/assets/" + asset) for url in requests), requests
    assert failures == [], failures
    assert exceptions == [], exceptions
