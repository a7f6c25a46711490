"""Helpers shared by the interop tests: event batches, DoPut, HTTP calls."""

import json
import urllib.request

import pyarrow as pa
import pyarrow.flight as flight

# What a failed Flight call raises: pyarrow maps some gRPC codes to its own errors
# (INVALID_ARGUMENT is `ArrowInvalid`), the others to `FlightError` subclasses.
ERRORS = (flight.FlightError, pa.ArrowException)

SCHEMA = pa.schema(
    [
        pa.field("entity_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("payload", pa.string(), nullable=False),
    ]
)


def batch(first, count, event_type="order.placed", entities=10):
    """Events `first..first+count`: entity `order-{i % entities}`, payload
    `{"n": i, "amount": i % 100}`."""
    rows = range(first, first + count)
    return pa.record_batch(
        [
            pa.array([f"order-{i % entities}" for i in rows], pa.string()),
            pa.array([event_type] * count, pa.string()),
            pa.array([json.dumps({"n": i, "amount": i % 100}) for i in rows], pa.string()),
        ],
        schema=SCHEMA,
    )


def put(location, batches, schema=None):
    """DoPut `batches` to the `events` path; the acknowledgement of each batch."""
    client = flight.connect(location)
    schema = schema or batches[0].schema
    descriptor = flight.FlightDescriptor.for_path("events")
    writer, reader = client.do_put(descriptor, schema)
    acks = []
    try:
        for b in batches:
            writer.write_batch(b)
            ack = reader.read()
            if ack is None:
                # The server ended the call: closing the writer raises its error.
                break
            acks.append(json.loads(ack.to_pybytes()))
        writer.done_writing()
        writer.close()
    finally:
        client.close()
    return acks


def post_json(url, body, accept="application/json"):
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Accept": accept},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


def http_query(base, sql):
    """`POST /api/v1/query` with the result as an Arrow IPC stream."""
    body = post_json(
        base + "/api/v1/query", {"sql": sql}, accept="application/vnd.apache.arrow.stream"
    )
    return pa.ipc.open_stream(body).read_all()
