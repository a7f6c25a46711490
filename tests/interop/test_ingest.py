"""Appending Arrow batches: pyarrow DoPut to the `events` path and ADBC bulk ingest."""

import json

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from events import ERRORS, SCHEMA, batch, put


def count(server):
    with flight_sql.connect(server.flight, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM events")
        return cur.fetchone()[0]


def test_put_100k_events_then_query_sees_exactly_them(server):
    batches = [batch(i * 10_000, 10_000, entities=1000) for i in range(10)]
    acks = put(server.flight, batches)
    assert [a["count"] for a in acks] == [10_000] * 10
    assert acks[0]["first_position"] == 0
    assert acks[-1]["last_position"] == 99_999
    for before, after in zip(acks, acks[1:]):
        assert after["first_position"] == before["last_position"] + 1
    with flight_sql.connect(server.flight, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT position, entity_id, payload FROM events ORDER BY position"
        )
        table = cur.fetch_arrow_table()
    assert table.num_rows == 100_000
    assert table.column("position").to_pylist() == list(range(100_000))
    sent = pa.Table.from_batches(batches)
    assert table.column("entity_id").to_pylist() == sent.column("entity_id").to_pylist()
    assert table.column("payload").to_pylist() == sent.column("payload").to_pylist()


def rejected(server, bad, schema=None):
    """DoPut one bad batch after nothing; the error the server answers with."""
    with pytest.raises(ERRORS) as failure:
        put(server.flight, [bad], schema)
    return str(failure.value)


def test_a_malformed_batch_is_rejected_and_writes_nothing(server):
    put(server.flight, [batch(0, 100)])

    # Bad JSON in one row of the batch: nothing of it is written.
    payloads = [json.dumps({"n": i}) for i in range(50)]
    payloads[37] = "{not json"
    bad_json = pa.record_batch(
        [
            pa.array(["order-1"] * 50),
            pa.array(["order.placed"] * 50),
            pa.array(payloads),
        ],
        schema=SCHEMA,
    )
    assert "payload" in rejected(server, bad_json)

    # A required column missing.
    missing = pa.record_batch([pa.array(["order-1"]), pa.array(["x"])], names=["entity_id", "event_type"])
    assert "payload" in rejected(server, missing)

    # A column of the wrong type.
    wrong_type = pa.record_batch(
        [pa.array(["order-1"]), pa.array(["x"]), pa.array([42], pa.int64())],
        names=["entity_id", "event_type", "payload"],
    )
    assert "payload" in rejected(server, wrong_type)

    # A column nobody knows.
    unknown = pa.record_batch(
        [pa.array(["order-1"]), pa.array(["x"]), pa.array(["{}"]), pa.array([1])],
        names=["entity_id", "event_type", "payload", "colour"],
    )
    assert "colour" in rejected(server, unknown)

    assert count(server) == 100


def test_a_good_batch_after_a_bad_one_in_the_same_stream_is_not_written(server):
    client = flight.connect(server.flight)
    writer, reader = client.do_put(flight.FlightDescriptor.for_path("events"), SCHEMA)
    writer.write_batch(batch(0, 10))
    assert json.loads(reader.read().to_pybytes())["count"] == 10
    bad = batch(10, 10).to_pydict()
    bad["payload"][3] = "]"
    writer.write_batch(pa.record_batch(bad, schema=SCHEMA))
    # The server answers the bad batch by ending the call with its error.
    assert reader.read() is None
    with pytest.raises(ERRORS) as failure:
        writer.write_batch(batch(20, 10))
        writer.done_writing()
        writer.close()
    assert "payload" in str(failure.value)
    # The batch before the bad one was acknowledged, so it is durable; nothing after.
    assert count(server) == 10


def test_adbc_ingest_appends(server):
    table = pa.table(
        {
            "entity_id": ["user-1", "user-2", "user-1"],
            "event_type": ["user.created", "user.created", "user.renamed"],
            "payload": ['{"name": "Ada"}', '{"name": "Bob"}', '{"name": "Ada L."}'],
            "metadata": ['{"source": "adbc"}', None, None],
        }
    )
    with flight_sql.connect(server.flight, autocommit=True) as conn, conn.cursor() as cur:
        written = cur.adbc_ingest("events", table, mode="append")
        assert written in (3, -1)
        cur.execute(
            "SELECT entity_id, event_type, version, payload->>'name' AS name, "
            "metadata->>'source' AS source FROM events ORDER BY position"
        )
        rows = cur.fetchall()
    assert rows == [
        ("user-1", "user.created", 1, "Ada", "adbc"),
        ("user-2", "user.created", 1, "Bob", None),
        ("user-1", "user.renamed", 2, "Ada L.", None),
    ]


def test_adbc_ingest_into_another_table_or_mode_is_refused(server):
    import adbc_driver_manager

    table = pa.table({"entity_id": ["a"], "event_type": ["t"], "payload": ["{}"]})
    with flight_sql.connect(server.flight, autocommit=True) as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as failure:
            cur.adbc_ingest("streams", table, mode="append")
        assert "events" in str(failure.value)
        with pytest.raises(adbc_driver_manager.Error):
            cur.adbc_ingest("events", table, mode="replace")
    assert count(server) == 0
