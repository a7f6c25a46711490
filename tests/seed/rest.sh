#!/usr/bin/env bash
# The REST examples of the product's seed README, run verbatim against
# `allsource serve` on its default address (localhost:8080); every answer is checked.
# Needs curl and python3. Run by `cargo test` (tests/server/seed.rs), or by hand
# against a fresh `allsource serve`.
set -euo pipefail

# check 'PYTHON' : the answer on stdin as `d`; fails the script when an assert fails.
check() {
  python3 -c "import json, sys
d = json.load(sys.stdin)
$1" || { echo "check failed: $1" >&2; exit 1; }
}

step() { echo "== $1" >&2; }

step "ingest an event"
out=$(curl -X POST http://localhost:8080/api/v1/events \
  -H "Content-Type: application/json" \
  -d '{
    "event_type": "user.created",
    "entity_id": "user-123",
    "payload": {
      "name": "Alice",
      "email": "alice@example.com"
    }
  }')
echo "$out" | check 'assert d["entity_id"] == "user-123" and d["version"] == 1, d
assert len(d["event_id"]) == 36, d'

step "all events for an entity"
out=$(curl "http://localhost:8080/api/v1/events/query?entity_id=user-123")
echo "$out" | check 'assert d["count"] == 1, d
e = d["events"][0]
assert e["event_type"] == "user.created" and e["payload"] == {"name": "Alice", "email": "alice@example.com"}, e'

step "time-travel query (the log on 2024-01-15 held nothing yet)"
out=$(curl "http://localhost:8080/api/v1/events/query?entity_id=user-123&as_of=2024-01-15T10:00:00Z")
echo "$out" | check 'assert d["count"] == 0 and d["events"] == [], d'

# A second version, so that time travel between the two has something to show.
between=$(python3 -c 'import datetime; print(datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))')
sleep 0.05
curl -sS -X POST http://localhost:8080/api/v1/events -H "Content-Type: application/json" \
  -d '{"event_type": "user.updated", "entity_id": "user-123", "payload": {"email": "alice@new.example"}}' \
  | check 'assert d["version"] == 2, d'
out=$(curl -sS "http://localhost:8080/api/v1/events/query?entity_id=user-123&as_of=$between")
echo "$out" | check 'assert [e["version"] for e in d["events"]] == [1], d'

step "query by type"
out=$(curl "http://localhost:8080/api/v1/events/query?event_type=user.created&limit=10")
echo "$out" | check 'assert d["count"] == 1 and d["events"][0]["entity_id"] == "user-123", d'

step "other query forms"
out=$(curl -sS "http://localhost:8080/api/v1/events/query?since=2024-01-15T00:00:00Z&limit=100")
echo "$out" | check 'assert d["count"] == 2, d'

step "entity state, now and in the past; snapshot"
out=$(curl -sS "http://localhost:8080/api/v1/entities/user-123/state")
echo "$out" | check 'assert d["version"] == 2, d
assert d["state"] == {"name": "Alice", "email": "alice@new.example"}, d'
out=$(curl -sS "http://localhost:8080/api/v1/entities/user-123/state?as_of=$between")
echo "$out" | check 'assert d["version"] == 1 and d["state"]["email"] == "alice@example.com", d'
out=$(curl -sS "http://localhost:8080/api/v1/entities/user-123/state?as_of=2024-01-15T10:00:00Z" -o /dev/null -w '%{http_code}')
[ "$out" = 404 ] || { echo "state before the entity existed: expected 404, got $out" >&2; exit 1; }
curl -sS -X POST http://localhost:8080/api/v1/snapshots -H "Content-Type: application/json" \
  -d '{"entity_id": "user-123"}' | check 'assert d["version"] == 2, d'
out=$(curl -sS "http://localhost:8080/api/v1/entities/user-123/snapshot")
echo "$out" | check 'assert d["version"] == 2 and d["state"]["name"] == "Alice", d'

step "health and metrics"
curl -sS http://localhost:8080/health | check 'assert d["status"] == "ok" and d["store"]["events"] == 2, d'
metrics=$(curl -sS http://localhost:8080/metrics)
grep -qx 'allsource_appended_events_total 2' <<<"$metrics" \
  || { echo "metrics: expected allsource_appended_events_total 2 in:" >&2; echo "$metrics" >&2; exit 1; }

step "the seed's pipeline (operator-list format) against the same EventQL"
for user in "1 US" "2 FR" "3 US" "4 DE" "5 US"; do
  set -- $user
  curl -sS -X POST http://localhost:8080/api/v1/events -H "Content-Type: application/json" \
    -d "{\"event_type\": \"user.created\", \"entity_id\": \"user-$1\", \"payload\": {\"id\": $1, \"country\": \"$2\"}}" \
    | check 'assert d["version"] == 1, d'
done
curl -sS -X POST http://localhost:8080/api/v1/events -H "Content-Type: application/json" \
  -d '{"event_type": "user.updated", "entity_id": "user-5", "payload": {"id": 5, "country": "US"}}' \
  | check 'assert d["version"] == 2, d'
out=$(curl -X POST http://localhost:8080/api/v1/pipelines \
  -H "Content-Type: application/json" \
  -d '{
    "name": "user_analytics",
    "source_event_types": ["user.created", "user.updated"],
    "operators": [
      { "type": "filter", "field": "country", "value": "US", "op": "eq" },
      { "type": "reduce", "field": "id", "function": "count", "group_by": "country" }
    ],
    "enabled": true
  }')
echo "$out" | check 'assert d["name"] == "user_analytics" and d["state"] == "running", d'
eventql=$(curl -sS -X POST http://localhost:8080/api/v1/query -H "Content-Type: application/json" \
  -d "{\"sql\": \"SELECT payload->>'country' AS country, COUNT(payload->>'id') AS count FROM events WHERE event_type IN ('user.created', 'user.updated') AND payload->>'country' = 'US' GROUP BY payload->>'country'\"}")
echo "$eventql" | check 'assert d["rows"] == [{"country": "US", "count": 4}], d'
for attempt in $(seq 100); do
  table=$(curl -sS -X POST http://localhost:8080/api/v1/query -H "Content-Type: application/json" \
    -d '{"sql": "SELECT * FROM user_analytics"}')
  if python3 -c "import json, sys; sys.exit(json.loads(sys.argv[1])['rows'] != json.loads(sys.argv[2])['rows'])" "$table" "$eventql"; then
    break
  fi
  [ "$attempt" -lt 100 ] || { echo "pipeline table $table, EventQL $eventql" >&2; exit 1; }
  sleep 0.1
done
out=$(curl -sS http://localhost:8080/api/v1/pipelines/stats)
echo "$out" | check 'assert d["count"] == 1 and d["pipelines"][0]["events_in"] == 8, d'
out=$(curl -sS http://localhost:8080/api/v1/pipelines/user_analytics/stats)
echo "$out" | check 'assert d["state"] == "running" and d["lag_events"] == 0, d'
out=$(curl -sS -X PUT http://localhost:8080/api/v1/pipelines/user_analytics/reset)
echo "$out" | check 'assert d["name"] == "user_analytics", d'
out=$(curl -sS -X DELETE http://localhost:8080/api/v1/pipelines/user_analytics)
echo "$out" | check 'assert d["dropped"] is True, d'

step "the seed's replay of a projection, with progress"
out=$(curl -sS -X POST http://localhost:8080/api/v1/projections -H "Content-Type: application/json" \
  -d '{"name": "user_snapshot", "sql": "SELECT entity_id, json_merge_agg(payload) AS state, MAX(version) AS version FROM events GROUP BY entity_id"}')
echo "$out" | check 'assert d["kind"] == "projection" and d["state"] == "running", d'
out=$(curl -X POST http://localhost:8080/api/v1/replay \
  -H "Content-Type: application/json" \
  -d '{
    "projection_name": "user_snapshot",
    "from_timestamp": "2024-01-01T00:00:00Z",
    "config": { "batch_size": 1000, "emit_progress": true }
  }')
echo "$out" | check 'assert d["projection_name"] == "user_snapshot" and d["status"] in ("pending", "running", "completed"), d'
replay_id=$(echo "$out" | python3 -c 'import json, sys; print(json.load(sys.stdin)["replay_id"])')
for attempt in $(seq 100); do
  out=$(curl -sS "http://localhost:8080/api/v1/replay/$replay_id")
  if echo "$out" | python3 -c 'import json, sys; sys.exit(json.load(sys.stdin)["status"] != "completed")'; then
    break
  fi
  [ "$attempt" -lt 100 ] || { echo "replay $out" >&2; exit 1; }
  sleep 0.1
done
echo "$out" | check 'assert d["percent"] == 100 and d["events"] > 0 and d["events_per_second"] > 0, d'
state=$(curl -sS "http://localhost:8080/api/v1/entities/user-123/state")
out=$(curl -sS "http://localhost:8080/api/v1/projections/user_snapshot/user-123")
python3 -c "import json, sys
state, row = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert row['state'] == state['state'] and row['version'] == state['version'], (row, state)" "$state" "$out"
out=$(curl -sS "http://localhost:8080/api/v1/replay")
echo "$out" | check 'assert d["count"] == 1 and d["replays"][0]["status"] == "completed", d'

echo "all seed REST examples answered as expected" >&2
