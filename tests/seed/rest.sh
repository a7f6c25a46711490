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

echo "all seed REST examples answered as expected" >&2
