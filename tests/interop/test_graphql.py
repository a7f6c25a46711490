"""GraphQL with the `gql` client: queries and the mutation over HTTP, the `events`
subscription over WebSocket in both protocols, while another process appends, and a
reconnect from the last position seen that misses nothing."""

import asyncio
import subprocess
import sys

import pytest
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
