"""The Nexmark queries' batch forms and the event-analytics queries, in DuckDB and in
Polars, over a store's Parquet files.

    python3 engines.py ENGINE GLOB FROM_US TO_US rows
    python3 engines.py ENGINE GLOB FROM_US TO_US time RUNS

ENGINE is `duckdb` or `polars`; GLOB names the store's Parquet files; FROM_US and
TO_US bound the time-range query (µs since the epoch). `rows` prints every query's
rows as JSON (timestamps as µs since the epoch). `time` runs every query RUNS times,
one round after another, and prints each query's times in seconds and its row count.

Both engines read the files afresh on every run: DuckDB through views over
`read_parquet`, Polars through `scan_parquet`. Each query's result is materialised
(an Arrow table for DuckDB, a DataFrame for Polars), as AllSource's query is.
"""

import json
import sys
import time
from datetime import datetime, timezone

TENANT = "nexmark"
SECOND = 1_000_000

# The queries, in the order AllSource's benchmarks list them.
NAMES = ["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q11", "q8",
         "types", "per_minute", "top_bidders", "distinct_bidders", "latest_bid",
         "time_range", "bidder_activity"]


def duckdb_queries(glob, from_us, to_us):
    """A DuckDB connection with typed views of persons, auctions and bids, and each
    query's SQL."""
    import duckdb
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute(f"CREATE VIEW ev AS SELECT * FROM read_parquet('{glob}') WHERE tenant = '{TENANT}'")

    def field(name, kind="BIGINT", alias=None):
        return f"CAST(json_extract_string(payload, '$.{name}') AS {kind}) AS {alias or name}"

    con.execute(f"""CREATE VIEW person AS SELECT {field('id')}, {field('name', 'VARCHAR')},
      {field('city', 'VARCHAR')}, {field('state', 'VARCHAR')}, timestamp AS date_time
      FROM ev WHERE event_type = 'person'""")
    con.execute(f"""CREATE VIEW auction AS SELECT {field('id')}, {field('seller')},
      {field('category')}, {field('expires')}, {field('date_time', alias='opened')},
      timestamp AS date_time FROM ev WHERE event_type = 'auction'""")
    con.execute(f"""CREATE VIEW bid AS SELECT entity_id, {field('auction')}, {field('bidder')},
      {field('price')}, {field('channel', 'VARCHAR')}, {field('url', 'VARCHAR')},
      {field('date_time', alias='at')}, timestamp AS date_time
      FROM ev WHERE event_type = 'bid'""")
    queries = {
        "q0": "SELECT auction, bidder, price, epoch_us(date_time), url FROM bid",
        "q1": "SELECT auction, bidder, price * CAST(0.908 AS DOUBLE), epoch_us(date_time) FROM bid",
        "q2": "SELECT auction, price FROM bid WHERE auction % 123 = 0",
        "q3": """SELECT P.name, P.city, P.state, A.id FROM auction A JOIN person P ON A.seller = P.id
                 WHERE A.category = 10 AND P.state IN ('OR', 'ID', 'CA')""",
        "q4": """SELECT category, AVG(final) FROM (
                   SELECT A.category, MAX(B.price) AS final FROM auction A JOIN bid B ON A.id = B.auction
                   WHERE B.at BETWEEN A.opened AND A.expires GROUP BY A.id, A.category)
                 GROUP BY category""",
        "q5": """WITH w AS (SELECT time_bucket(INTERVAL 2 SECOND, date_time) - to_seconds(2 * k) AS ws, auction
                            FROM bid, range(0, 5) t(k)),
                      c AS (SELECT ws, auction, COUNT(*) AS n FROM w GROUP BY ws, auction),
                      r AS (SELECT *, RANK() OVER (PARTITION BY ws ORDER BY n DESC) AS place FROM c)
                 SELECT epoch_us(ws), epoch_us(ws + INTERVAL 10 SECOND), auction, n FROM r WHERE place = 1""",
        "q7": """SELECT epoch_us(time_bucket(INTERVAL 10 SECOND, date_time)),
                        epoch_us(time_bucket(INTERVAL 10 SECOND, date_time)) + 10000000, MAX(price), COUNT(*)
                 FROM bid GROUP BY time_bucket(INTERVAL 10 SECOND, date_time)""",
        "q11": """WITH o AS (SELECT entity_id, epoch_us(date_time) AS t FROM bid),
                       d AS (SELECT *, t - LAG(t) OVER (PARTITION BY entity_id ORDER BY t) AS since FROM o),
                       s AS (SELECT *, SUM(CASE WHEN since IS NULL OR since >= 10000000 THEN 1 ELSE 0 END)
                               OVER (PARTITION BY entity_id ORDER BY t ROWS UNBOUNDED PRECEDING) AS session FROM d)
                  SELECT MIN(t), MAX(t) + 10000000, entity_id, COUNT(*) FROM s GROUP BY entity_id, session""",
        "q8": """SELECT epoch_us(P.ws), epoch_us(P.ws) + 10000000, P.id, P.name
                 FROM (SELECT id, name, time_bucket(INTERVAL 10 SECOND, date_time) AS ws FROM person) P
                 JOIN (SELECT DISTINCT seller, time_bucket(INTERVAL 10 SECOND, date_time) AS ws FROM auction) A
                 ON P.id = A.seller AND P.ws = A.ws""",
        "types": "SELECT event_type, COUNT(*) FROM ev GROUP BY event_type",
        "per_minute": """SELECT epoch_us(date_trunc('minute', date_time)), channel, COUNT(*), AVG(price)
                         FROM bid GROUP BY 1, 2""",
        "top_bidders": """SELECT entity_id, COUNT(*) AS n FROM ev WHERE event_type = 'bid'
                          GROUP BY entity_id ORDER BY n DESC, entity_id LIMIT 10""",
        "distinct_bidders": "SELECT auction, COUNT(DISTINCT bidder) FROM bid GROUP BY auction",
        "latest_bid": "SELECT auction, arg_max(price, date_time) FROM bid GROUP BY auction",
        "time_range": f"""SELECT COUNT(*), SUM(price) FROM bid
                          WHERE date_time >= make_timestamp({from_us}) AND date_time < make_timestamp({to_us})""",
        "bidder_activity": """SELECT entity_id, epoch_us(MIN(timestamp)), epoch_us(MAX(timestamp)), COUNT(*)
                              FROM ev WHERE event_type = 'bid' GROUP BY entity_id""",
    }

    def run(name):
        return con.execute(queries[name]).to_arrow_table()

    def rows(name):
        return [list(row) for row in con.execute(queries[name]).fetchall()]

    return run, rows, duckdb.__version__


def polars_queries(glob, from_us, to_us):
    """Each query as a Polars lazy frame over `scan_parquet`."""
    import polars as pl

    def events():
        return pl.scan_parquet(glob).filter(pl.col("tenant") == TENANT)

    def typed(kind, fields):
        """The events of one type with the payload fields given (name → dtype) as
        columns; the payload's `date_time` becomes `at`."""
        struct = pl.Struct(fields)
        return (events().filter(pl.col("event_type") == kind)
                .with_columns(pl.col("payload").str.json_decode(struct).alias("p"))
                .unnest("p")
                .rename({"date_time": "at"} if "date_time" in fields else {})
                .with_columns(pl.col("timestamp").dt.epoch("us").alias("t")))

    def person():
        return typed("person", {"id": pl.Int64, "name": pl.String, "city": pl.String,
                                "state": pl.String})

    def auction():
        return typed("auction", {"id": pl.Int64, "seller": pl.Int64, "category": pl.Int64,
                                 "expires": pl.Int64, "date_time": pl.Int64})

    def bid():
        return typed("bid", {"auction": pl.Int64, "bidder": pl.Int64, "price": pl.Int64,
                             "channel": pl.String, "url": pl.String, "date_time": pl.Int64})

    def bucket(column, size):
        return (pl.col(column) // size) * size

    ten = 10 * SECOND

    def q5():
        return (bid().select(bucket("t", 2 * SECOND).alias("ws"), "auction")
                .with_columns(pl.int_ranges(0, 5).alias("k")).explode("k")
                .with_columns(pl.col("ws") - pl.col("k") * 2 * SECOND)
                .group_by("ws", "auction").agg(pl.len().alias("n"))
                .filter(pl.col("n").rank("min", descending=True).over("ws") == 1)
                .select("ws", (pl.col("ws") + ten).alias("we"), "auction", "n"))

    def q11():
        since = pl.col("t") - pl.col("t").shift(1).over("entity_id")
        return (bid().select("entity_id", "t").sort("entity_id", "t")
                .with_columns((since.is_null() | (since >= ten)).cast(pl.Int64)
                              .cum_sum().over("entity_id").alias("session"))
                .group_by("entity_id", "session")
                .agg(pl.col("t").min().alias("start"), (pl.col("t").max() + ten).alias("end"),
                     pl.len().alias("n"))
                .select("start", "end", "entity_id", "n"))

    def q8():
        people = person().select("id", "name", bucket("t", ten).alias("ws"))
        sellers = auction().select("seller", bucket("t", ten).alias("ws")).unique()
        return (people.join(sellers, left_on=["id", "ws"], right_on=["seller", "ws"])
                .select("ws", (pl.col("ws") + ten).alias("we"), "id", "name"))

    since = datetime.fromtimestamp(from_us / SECOND, tz=timezone.utc)
    until = datetime.fromtimestamp(to_us / SECOND, tz=timezone.utc)
    queries = {
        "q0": lambda: bid().select("auction", "bidder", "price", "t", "url"),
        "q1": lambda: bid().select("auction", "bidder", pl.col("price") * 0.908, "t"),
        "q2": lambda: bid().filter(pl.col("auction") % 123 == 0).select("auction", "price"),
        "q3": lambda: (auction().filter(pl.col("category") == 10)
                       .join(person().filter(pl.col("state").is_in(["OR", "ID", "CA"])),
                             left_on="seller", right_on="id")
                       .select("name", "city", "state", "id")),
        "q4": lambda: (auction().select("id", "category", "at", "expires")
                       .join(bid().select("auction", "price", pl.col("at").alias("bid_at")),
                             left_on="id", right_on="auction")
                       .filter(pl.col("bid_at").is_between(pl.col("at"), pl.col("expires")))
                       .group_by("id", "category").agg(pl.col("price").max().alias("final"))
                       .group_by("category").agg(pl.col("final").mean())),
        "q5": q5,
        "q7": lambda: (bid().group_by(bucket("t", ten).alias("ws"))
                       .agg(pl.col("price").max(), pl.len().alias("n"))
                       .select("ws", (pl.col("ws") + ten).alias("we"), "price", "n")),
        "q11": q11,
        "q8": q8,
        "types": lambda: events().group_by("event_type").agg(pl.len()),
        "per_minute": lambda: (bid().group_by(pl.col("timestamp").dt.truncate("1m").dt.epoch("us")
                                              .alias("minute"), "channel")
                               .agg(pl.len(), pl.col("price").mean())),
        "top_bidders": lambda: (events().filter(pl.col("event_type") == "bid")
                                .group_by("entity_id").agg(pl.len().alias("n"))
                                .sort(["n", "entity_id"], descending=[True, False]).head(10)),
        "distinct_bidders": lambda: bid().group_by("auction").agg(pl.col("bidder").n_unique()),
        "latest_bid": lambda: (bid().group_by("auction")
                               .agg(pl.col("price").sort_by("timestamp").last())),
        "time_range": lambda: (bid().filter((pl.col("timestamp") >= since)
                                            & (pl.col("timestamp") < until))
                               .select(pl.len(), pl.col("price").sum())),
        "bidder_activity": lambda: (events().filter(pl.col("event_type") == "bid")
                                    .group_by("entity_id")
                                    .agg(pl.col("timestamp").min().dt.epoch("us"),
                                         pl.col("timestamp").max().dt.epoch("us").alias("last"),
                                         pl.len())),
    }

    def run(name):
        return queries[name]().collect()

    def rows(name):
        return [list(row) for row in run(name).rows()]

    return run, rows, pl.__version__


def main():
    engine, glob, from_us, to_us, mode = sys.argv[1:6]
    build = {"duckdb": duckdb_queries, "polars": polars_queries}[engine]
    run, rows, version = build(glob, int(from_us), int(to_us))
    if mode == "rows":
        print(json.dumps({"version": version, "rows": {name: rows(name) for name in NAMES}}))
        return
    runs = int(sys.argv[6])
    seconds = {name: [] for name in NAMES}
    counts = {}
    for _ in range(runs):
        for name in NAMES:
            started = time.perf_counter()
            result = run(name)
            seconds[name].append(time.perf_counter() - started)
            counts[name] = len(result)
    print(json.dumps({"version": version, "seconds": seconds, "rows": counts}))


if __name__ == "__main__":
    main()
