//! The GraphQL API: queries over events and streams, the `appendEvents` mutation with
//! optimistic concurrency, and live subscriptions, exposed as an axum router that the
//! server mounts at `/graphql`.
//!
//! A thin adapter at the edge; the schema arrives with the GraphQL work. Dependencies
//! point inward only (`graphql` -> `engine`).
