//! The Nexmark queries in EventQL: each runs as a pipeline (`nexmark`) and as a
//! batch query (`analytics`).

/// A Nexmark query: its name, what it asks, and its EventQL.
pub struct Query {
    pub name: &'static str,
    pub what: &'static str,
    pub sql: &'static str,
    /// For a query whose pipeline keeps totals per key (a table updated as events
    /// arrive): the query over that table (`result`) that gives the answer. The
    /// batch form of the whole query is then `batch`.
    pub over_table: Option<OverTable>,
}

pub struct OverTable {
    pub outer: &'static str,
    pub batch: &'static str,
}

pub const QUERIES: &[Query] = &[
    Query {
        name: "q0",
        what: "pass-through of bids",
        sql: "SELECT payload->>'auction' AS auction, payload->>'bidder' AS bidder, \
              payload->>'price' AS price, timestamp AS date_time, payload->>'url' AS url \
              FROM events WHERE event_type = 'bid'",
        over_table: None,
    },
    Query {
        name: "q1",
        what: "bid prices in euros",
        sql: "SELECT payload->>'auction' AS auction, payload->>'bidder' AS bidder, \
              CAST(payload->>'price' AS BIGINT) * 0.908 AS price, timestamp AS date_time \
              FROM events WHERE event_type = 'bid'",
        over_table: None,
    },
    Query {
        name: "q2",
        what: "bids on auctions whose id is a multiple of 123",
        sql: "SELECT payload->>'auction' AS auction, payload->>'price' AS price \
              FROM events \
              WHERE event_type = 'bid' AND CAST(payload->>'auction' AS BIGINT) % 123 = 0",
        over_table: None,
    },
    Query {
        name: "q3",
        what: "auctions of category 10 by sellers in OR, ID or CA (incremental join)",
        sql: "SELECT p.payload->>'name' AS name, p.payload->>'city' AS city, \
                p.payload->>'state' AS state, a.payload->>'id' AS auction \
              FROM events AS a JOIN events AS p ON a.payload->>'seller' = p.payload->>'id' \
              WHERE a.event_type = 'auction' AND p.event_type = 'person' \
                AND CAST(a.payload->>'category' AS BIGINT) = 10 \
                AND p.payload->>'state' IN ('OR', 'ID', 'CA')",
        over_table: None,
    },
    Query {
        name: "q4",
        what: "average closing price per category (join, then totals per auction)",
        sql: "SELECT a.payload->>'id' AS auction, \
                CAST(a.payload->>'category' AS BIGINT) AS category, \
                MAX(CAST(b.payload->>'price' AS BIGINT)) AS final \
              FROM events AS a JOIN events AS b ON a.payload->>'id' = b.payload->>'auction' \
              WHERE a.event_type = 'auction' AND b.event_type = 'bid' \
                AND CAST(b.payload->>'date_time' AS BIGINT) \
                  BETWEEN CAST(a.payload->>'date_time' AS BIGINT) \
                  AND CAST(a.payload->>'expires' AS BIGINT) \
              GROUP BY a.payload->>'id', CAST(a.payload->>'category' AS BIGINT)",
        over_table: Some(OverTable {
            outer: "SELECT category, AVG(final) AS average FROM result GROUP BY category",
            batch: "SELECT category, AVG(final) AS average FROM ( \
                      SELECT CAST(a.payload->>'category' AS BIGINT) AS category, \
                        MAX(CAST(b.payload->>'price' AS BIGINT)) AS final \
                      FROM events AS a JOIN events AS b \
                        ON a.payload->>'id' = b.payload->>'auction' \
                      WHERE a.event_type = 'auction' AND b.event_type = 'bid' \
                        AND CAST(b.payload->>'date_time' AS BIGINT) \
                          BETWEEN CAST(a.payload->>'date_time' AS BIGINT) \
                          AND CAST(a.payload->>'expires' AS BIGINT) \
                      GROUP BY a.payload->>'id', CAST(a.payload->>'category' AS BIGINT)) \
                    GROUP BY category",
        }),
    },
    Query {
        name: "q5",
        what: "hot items: the most-bid auctions per 10 s window every 2 s",
        sql: "SELECT window_start, window_end, auction, bids FROM ( \
                SELECT window_start, window_end, payload->>'auction' AS auction, \
                  COUNT(*) AS bids, \
                  RANK() OVER (PARTITION BY window_start ORDER BY COUNT(*) DESC) AS place \
                FROM HOP(events, timestamp, INTERVAL '2' SECOND, INTERVAL '10' SECOND) \
                WHERE event_type = 'bid' \
                GROUP BY window_start, window_end, payload->>'auction') \
              WHERE place = 1",
        over_table: None,
    },
    Query {
        name: "q7",
        what: "the highest bid per 10 s window",
        sql: "SELECT window_start, window_end, MAX(CAST(payload->>'price' AS BIGINT)) AS price, \
                COUNT(*) AS bids \
              FROM TUMBLE(events, timestamp, INTERVAL '10' SECOND) \
              WHERE event_type = 'bid' GROUP BY window_start, window_end",
        over_table: None,
    },
    Query {
        name: "q11",
        what: "bids per bidder session (10 s gap)",
        sql: "SELECT window_start, window_end, entity_id AS bidder, COUNT(*) AS bids \
              FROM SESSION(events, timestamp, INTERVAL '10' SECOND, entity_id) \
              WHERE event_type = 'bid' GROUP BY window_start, window_end, entity_id",
        over_table: None,
    },
    Query {
        name: "q8",
        what: "new persons who opened an auction in the same 10 s window (window join)",
        sql: "SELECT window_start, window_end, \
                CASE WHEN event_type = 'person' THEN payload->>'id' \
                  ELSE payload->>'seller' END AS person, \
                MAX(CASE WHEN event_type = 'person' THEN payload->>'name' END) AS name \
              FROM TUMBLE(events, timestamp, INTERVAL '10' SECOND) \
              WHERE event_type IN ('person', 'auction') \
              GROUP BY window_start, window_end, \
                CASE WHEN event_type = 'person' THEN payload->>'id' \
                  ELSE payload->>'seller' END \
              HAVING SUM(CASE WHEN event_type = 'person' THEN 1 ELSE 0 END) > 0 \
                AND SUM(CASE WHEN event_type = 'auction' THEN 1 ELSE 0 END) > 0",
        over_table: None,
    },
];

impl Query {
    /// The query as one batch query over the events.
    pub fn batch_sql(&self) -> &'static str {
        self.over_table.as_ref().map_or(self.sql, |o| o.batch)
    }
}
