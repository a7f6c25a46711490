"""EventQL over Flight SQL from ADBC, Polars and pyarrow, against `allsource serve`."""

import json

import adbc_driver_flightsql.dbapi as flight_sql
import polars as pl
import pyarrow as pa
import pytest

from events import batch, http_query, put


@pytest.fixture
def loaded(server):
    """The server with 1000 events (entities order-0..9) appended over DoPut."""
    put(server.flight, [batch(0, 500), batch(500, 500)])
    return server


def connect(server):
    return flight_sql.connect(server.flight, autocommit=True)


def test_execute_and_fetch_arrow_table(loaded):
    with connect(loaded) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT entity_id, COUNT(*) AS n FROM events GROUP BY entity_id ORDER BY entity_id"
        )
        table = cur.fetch_arrow_table()
    assert table.column_names == ["entity_id", "n"]
    assert table.column("entity_id").to_pylist() == [f"order-{i}" for i in range(10)]
    assert table.column("n").to_pylist() == [100] * 10


def test_parameterized_query(loaded):
    with connect(loaded) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) AS n, MIN(position) AS first FROM events WHERE entity_id = $1",
            parameters=("order-3",),
        )
        assert cur.fetchone() == (100, 3)
        # The same prepared statement, other values.
        for entity, expected in [("order-7", 100), ("nobody", 0)]:
            cur.execute(
                "SELECT COUNT(*) AS n, MIN(position) AS first FROM events WHERE entity_id = $1",
                parameters=(entity,),
            )
            assert cur.fetchone()[0] == expected


def test_get_objects_lists_the_events_table(loaded):
    with connect(loaded) as conn:
        objects = conn.adbc_get_objects(depth="columns").read_all().to_pylist()
    catalogs = {c["catalog_name"]: c for c in objects}
    assert "allsource" in catalogs, objects
    schemas = {s["db_schema_name"]: s for s in catalogs["allsource"]["catalog_db_schemas"]}
    tables = {t["table_name"]: t for t in schemas["public"]["db_schema_tables"]}
    assert tables["events"]["table_type"] == "TABLE"
    columns = [c["column_name"] for c in tables["events"]["table_columns"]]
    for name in ["position", "entity_id", "event_type", "payload", "timestamp"]:
        assert name in columns, columns
    with connect(loaded) as conn:
        schema = conn.adbc_get_table_schema("events")
    assert schema.field("payload").type in (pa.string(), pa.large_string(), pa.string_view())


def test_polars_read_database_with_json_operator(loaded):
    with connect(loaded) as conn:
        frame = pl.read_database(
            "SELECT entity_id, SUM(CAST(payload->>'amount' AS BIGINT)) AS total "
            "FROM events GROUP BY entity_id ORDER BY entity_id",
            connection=conn,
        )
    assert frame.columns == ["entity_id", "total"]
    # Event i has amount i % 100 and entity order-(i % 10).
    expected = {
        f"order-{e}": sum(i % 100 for i in range(1000) if i % 10 == e) for e in range(10)
    }
    assert dict(zip(frame["entity_id"], frame["total"])) == expected


def test_flight_sql_and_http_return_identical_data(loaded):
    sql = (
        "SELECT position, entity_id, event_type, payload->>'n' AS n, version, payload "
        "FROM events WHERE event_type = 'order.placed' ORDER BY position"
    )
    with connect(loaded) as conn, conn.cursor() as cur:
        cur.execute(sql)
        over_flight = cur.fetch_arrow_table()
    over_http = http_query(loaded.http, sql)
    assert over_flight.num_rows == 1000
    assert over_flight.schema.names == over_http.schema.names
    assert over_flight.schema.types == over_http.schema.types
    assert over_flight.combine_chunks().equals(over_http.combine_chunks())
    assert json.loads(over_flight.column("payload")[999].as_py()) == {"n": 999, "amount": 99}


def test_a_bad_statement_is_a_clear_error(loaded):
    import adbc_driver_manager

    with connect(loaded) as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as failure:
            cur.execute("SELECT nope FROM events")
        assert "nope" in str(failure.value)
        with pytest.raises(adbc_driver_manager.Error) as failure:
            cur.execute("DELETE FROM events")
        assert "read-only" in str(failure.value) or "DELETE" in str(failure.value)
        # The connection is still usable.
        cur.execute("SELECT COUNT(*) FROM events")
        assert cur.fetchone() == (1000,)
