//! `GET /graphql`: the GraphiQL page, with its scripts and styles served from the
//! binary (`/graphql/assets/…`), so it works with no internet access.
//!
//! The assets are the npm packages' minified builds, gzipped and committed under
//! `graphql/assets/` (refreshed by `graphql/assets/fetch.sh`). They go out gzipped to
//! clients that accept it and are inflated for the rest.

use std::io::Read;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// (name, content type, gzipped bytes).
const ASSETS: [(&str, &str, &[u8]); 5] = [
    (
        "graphiql.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql.min.js.gz"),
    ),
    (
        "graphiql.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/graphiql.min.css.gz"),
    ),
    (
        "react.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/react.production.min.js.gz"),
    ),
    (
        "react-dom.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/react-dom.production.min.js.gz"),
    ),
    (
        "graphql-ws.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphql-ws.min.js.gz"),
    ),
];

/// The page: GraphiQL querying `/graphql`, subscribing over `/graphql/ws`.
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>AllSource GraphQL</title>
  <link rel="stylesheet" href="/graphql/assets/graphiql.min.css">
  <style>html, body, #graphiql { height: 100%; margin: 0; }</style>
</head>
<body>
  <div id="graphiql">Loading GraphiQL…</div>
  <script src="/graphql/assets/react.production.min.js"></script>
  <script src="/graphql/assets/react-dom.production.min.js"></script>
  <script src="/graphql/assets/graphql-ws.min.js"></script>
  <script src="/graphql/assets/graphiql.min.js"></script>
  <script>
    const socket = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/graphql/ws';
    const fetcher = GraphiQL.createFetcher({
      url: '/graphql',
      wsClient: graphqlWs.createClient({ url: socket, lazy: true }),
    });
    const example = '# Events, newest first\n{\n  events(first: 10, orderBy: POSITION_DESC) {\n    edges { cursor node { position entityId eventType timestamp payload } }\n    pageInfo { hasNextPage endCursor }\n  }\n}\n';
    ReactDOM.createRoot(document.getElementById('graphiql')).render(
      React.createElement(GraphiQL, { fetcher, defaultQuery: example }),
    );
  </script>
</body>
</html>
"#;

/// The page.
pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// One asset.
pub async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some((_, content_type, gzipped)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let accepts_gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let cache = (
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    let kind = (header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if accepts_gzip {
        let encoding = (header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        return ([kind, encoding, cache], *gzipped).into_response();
    }
    let mut plain = Vec::new();
    match flate2::read::GzDecoder::new(*gzipped).read_to_end(&mut plain) {
        Ok(_) => ([kind, cache], plain).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("inflating {name}: {e}"),
        )
            .into_response(),
    }
}
