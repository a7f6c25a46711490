"""Live tail: a subscriber follows the log while another process appends."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.flight as flight
import pytest
import requests

from events import ERRORS

HERE = Path(__file__).resolve().parent

APPENDER = """
import sys
sys.path.insert(0, {here!r})
from events import batch, put
location = sys.argv[1]
for i in range(20):
    put(location, [batch(i * 50, 50, event_type="order.placed" if i % 2 == 0 else "cart.updated")])
"""


def test_subscriber_receives_every_event_in_order_from_another_process(server):
    client = flight.connect(server.flight)
    ticket = flight.Ticket(json.dumps({"tail": {"from": 0, "event_type": "order.placed"}}))
    reader = client.do_get(ticket, flight.FlightCallOptions(timeout=120))
    appender = subprocess.Popen(
        [sys.executable, "-c", APPENDER.format(here=str(HERE)), server.flight]
    )
    # Ten batches of 50 "order.placed" events (the even ones) come through.
    wanted = 500
    seen = []
    while len(seen) < wanted:
        chunk = reader.read_chunk().data
        assert chunk.schema.field("position") is not None
        seen.extend(
            zip(
                chunk.column(chunk.schema.get_field_index("position")).to_pylist(),
                chunk.column(chunk.schema.get_field_index("event_type")).to_pylist(),
                chunk.column(chunk.schema.get_field_index("payload")).to_pylist(),
            )
        )
    assert appender.wait(timeout=120) == 0
    reader.cancel()
    client.close()
    assert len(seen) == wanted
    assert all(event_type == "order.placed" for _, event_type, _ in seen)
    positions = [p for p, _, _ in seen]
    assert positions == sorted(positions)
    numbers = [json.loads(p)["n"] for _, _, p in seen]
    expected = [n for i in range(0, 20, 2) for n in range(i * 50, i * 50 + 50)]
    assert numbers == expected


def test_a_bad_tail_ticket_is_a_clear_error(server):
    client = flight.connect(server.flight)
    with pytest.raises(ERRORS) as failure:
        client.do_get(flight.Ticket(b'{"tail": {"form": 3}}')).read_all()
    client.close()
    assert "unknown field `form`" in str(failure.value)


PER_TYPE = (
    "CREATE PROJECTION per_type AS "
    "SELECT event_type, COUNT(*) AS n, SUM(CAST(payload->>'n' AS BIGINT)) AS total "
    "FROM events GROUP BY event_type"
)


def test_a_pipeline_tail_streams_each_change_while_another_process_appends(server):
    """A `{"pipeline": {"name"}}` ticket streams the projection's changed rows as
    Arrow batches in its own columns, in order, up to each key's final row."""
    created = requests.post(server.http + "/api/v1/query", json={"sql": PER_TYPE}, timeout=60)
    assert created.status_code == 200, created.text
    client = flight.connect(server.flight)
    ticket = flight.Ticket(json.dumps({"pipeline": {"name": "per_type"}}))
    reader = client.do_get(ticket, flight.FlightCallOptions(timeout=120))
    assert reader.schema.names == ["event_type", "n", "total"]
    appender = subprocess.Popen(
        [sys.executable, "-c", APPENDER.format(here=str(HERE)), server.flight]
    )
    finals = {"order.placed": 500, "cart.updated": 500}
    latest, rows = {}, []
    while latest != finals:
        chunk = reader.read_chunk().data
        for row in chunk.to_pylist():
            rows.append(row)
            latest[row["event_type"]] = row["n"]
    assert appender.wait(timeout=120) == 0
    reader.cancel()
    for event_type in finals:
        counts = [r["n"] for r in rows if r["event_type"] == event_type]
        assert counts == sorted(counts) and len(set(counts)) == len(counts), counts
    placed = [r for r in rows if r["event_type"] == "order.placed"][-1]
    assert placed["total"] == sum(n for i in range(0, 20, 2) for n in range(i * 50, i * 50 + 50))

    with pytest.raises(ERRORS) as failure:
        client.do_get(flight.Ticket(json.dumps({"pipeline": {"name": "nothing"}}))).read_all()
    client.close()
    assert "no pipeline named nothing" in str(failure.value)
