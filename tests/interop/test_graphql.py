"""GraphQL with the `gql` client: queries and the mutation over HTTP, the `events`
subscription over WebSocket in both protocols, while another process appends, and a
reconnect from the last position seen that misses nothing."""

import asyncio
import subprocess
import sys

import pytest
import requests
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.requests import RequestsHTTPTransport
from gql.transport.websockets import WebsocketsTransport

APPEND = """
mutation($id: String!, $v: Int, $events: [EventInput!]!) {
  appendEvents(entityId: $id, expectedVersion: $v, events: $events) { version position }
}
"""

SUBSCRIBE = """
subscription($from: Int) {
  events(filter: {eventType: "order.placed"}, fromPosition: $from) {
    position entityId eventType version payload
  }
}
"""

# Another process appends 20 batches of 25 events over HTTP, one request each; the
# even batches are "order.placed", the odd ones "cart.updated".
APPENDER = """
import sys
from gql import Client, GraphQLRequest
from gql.transport.requests import RequestsHTTPTransport
client = Client(transport=RequestsHTTPTransport(url=sys.argv[1], timeout=60))
append = GraphQLRequest({append!r})
with client as session:
    for i in range(20):
        kind = "order.placed" if i % 2 == 0 else "cart.updated"
        events = [{{"eventType": kind, "payload": {{"n": i * 25 + k}}}} for k in range(25)]
        session.execute(append, variable_values={{"id": "order-%d" % (i % 3), "events": events}})
"""

WANTED = [n for i in range(0, 20, 2) for n in range(i * 25, i * 25 + 25)]


def ws_url(server):
    return server.http.replace("http://", "ws://") + "/graphql/ws"


def http_client(server):
    return Client(transport=RequestsHTTPTransport(url=server.http + "/graphql", timeout=60))


def start_appender(server):
    return subprocess.Popen(
        [sys.executable, "-c", APPENDER.format(append=APPEND), server.http + "/graphql"]
    )


async def receive(server, protocol, start, count):
    """`count` events of the subscription from position `start`."""
    transport = WebsocketsTransport(url=ws_url(server), subprotocols=[protocol])
    seen = []
    async with Client(transport=transport, execute_timeout=120) as session:
        request = GraphQLRequest(SUBSCRIBE, variable_values={"from": start})
        async for result in session.subscribe(request):
            seen.append(result["events"])
            if len(seen) == count:
                break
    return seen


def check(events):
    assert all(e["eventType"] == "order.placed" for e in events)
    positions = [e["position"] for e in events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert [e["payload"]["n"] for e in events] == WANTED


@pytest.mark.parametrize(
    "protocol",
    [WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL, WebsocketsTransport.APOLLO_SUBPROTOCOL],
)
def test_a_subscriber_receives_every_event_in_order_while_another_process_appends(
    server, protocol
):
    async def run():
        task = asyncio.ensure_future(receive(server, protocol, 0, len(WANTED)))
        appender = start_appender(server)
        events = await asyncio.wait_for(task, timeout=120)
        assert appender.wait(timeout=120) == 0
        return events

    check(asyncio.run(run()))


def test_a_reconnect_from_the_last_position_plus_one_misses_nothing(server):
    async def run():
        appender = start_appender(server)
        protocol = WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL
        # Drop the connection after 60 events, while the appender is still going.
        first = await asyncio.wait_for(receive(server, protocol, 0, 60), timeout=120)
        rest = await asyncio.wait_for(
            receive(server, protocol, first[-1]["position"] + 1, len(WANTED) - 60),
            timeout=120,
        )
        assert appender.wait(timeout=120) == 0
        return first + rest

    check(asyncio.run(run()))


def test_queries_mutation_and_a_conflict_through_the_client(server):
    with http_client(server) as session:
        created = session.execute(
            GraphQLRequest(
                APPEND,
                variable_values={
                    "id": "user-1",
                    "v": 0,
                    "events": [{"eventType": "user.created", "payload": {"name": "Ada"}}],
                },
            )
        )
        assert created["appendEvents"][0]["version"] == 1
        # The stream exists now: expecting none of it is a typed conflict.
        with pytest.raises(TransportQueryError) as failure:
            session.execute(
                GraphQLRequest(
                    APPEND,
                    variable_values={
                        "id": "user-1",
                        "v": 0,
                        "events": [{"eventType": "user.created", "payload": {}}],
                    },
                )
            )
        error = failure.value.errors[0]
        assert error["extensions"]["code"] == "WRONG_EXPECTED_VERSION"
        assert error["extensions"]["currentVersion"] == 1
        entity = session.execute(
            GraphQLRequest(
                '{ entity(id: "user-1") { version state events { edges { node { version } } } } }'
            )
        )["entity"]
        assert entity["version"] == 1
        assert entity["state"] == {"name": "Ada"}
        assert [e["node"]["version"] for e in entity["events"]["edges"]] == [1]


PROJECTION = (
    "CREATE PROJECTION per_order AS "
    "SELECT entity_id, COUNT(*) AS n, SUM(CAST(payload->>'n' AS BIGINT)) AS total "
    "FROM events GROUP BY entity_id"
)

UPDATES = "subscription { pipelineUpdates(name: \"per_order\") }"


def test_pipeline_updates_follow_a_projection_while_another_process_appends(server):
    """Every change of a projection's rows reaches a `pipelineUpdates` subscriber, in
    order, and `projection` then reads each key's final row."""
    created = requests.post(server.http + "/api/v1/query", json={"sql": PROJECTION}, timeout=60)
    assert created.status_code == 200, created.text

    async def run():
        transport = WebsocketsTransport(
            url=ws_url(server), subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL]
        )
        rows = []
        async with Client(transport=transport, execute_timeout=120) as session:
            # The subscription is live once a ping appended after it comes through;
            # then another process appends the orders.
            pinger = asyncio.ensure_future(ping(server))
            appender = None
            finals = {"order-0": 175, "order-1": 175, "order-2": 150}
            latest = {}
            async for result in session.subscribe(GraphQLRequest(UPDATES)):
                row = result["pipelineUpdates"]
                if row["entity_id"] == "ping":
                    if appender is None:
                        pinger.cancel()
                        appender = start_appender(server)
                    continue
                rows.append(row)
                latest[row["entity_id"]] = row["n"]
                if latest == finals:
                    break
            assert appender is not None and appender.wait(timeout=120) == 0
        return rows

    rows = asyncio.run(asyncio.wait_for(run(), timeout=180))
    for entity in ("order-0", "order-1", "order-2"):
        counts = [r["n"] for r in rows if r["entity_id"] == entity]
        assert counts == sorted(counts) and len(set(counts)) == len(counts), counts
    with http_client(server) as session:
        answer = session.execute(
            GraphQLRequest('{ projection(name: "per_order", entityId: "order-2") }')
        )
    row = answer["projection"]
    assert row["n"] == 150, row
    assert row["total"] == sum(n for i in range(2, 20, 3) for n in range(i * 25, i * 25 + 25)), row


async def ping(server):
    """Append a ping event every 100 ms until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        await loop.run_in_executor(
            None,
            lambda: requests.post(
                server.http + "/api/v1/events",
                json={"entity_id": "ping", "event_type": "ping", "payload": {"n": 0}},
                timeout=60,
            ),
        )
        await asyncio.sleep(0.1)
