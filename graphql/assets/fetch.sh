#!/usr/bin/env bash
# Refresh the GraphiQL page's assets from the npm registry. They are committed (gzipped)
# and compiled into the binary, so the page works with no internet access.
# Usage: graphql/assets/fetch.sh   (needs npm)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent graphiql@3.8.3 react@18.3.1 react-dom@18.3.1 graphql-ws@5.16.0 >/dev/null
for package in graphiql-3.8.3 react-18.3.1 react-dom-18.3.1 graphql-ws-5.16.0; do
  mkdir -p "$package" && tar xzf "$package.tgz" -C "$package"
done
gz() { gzip -9 -n -c "$1" > "$here/$(basename "$1").gz"; }
gz graphiql-3.8.3/package/graphiql.min.js
gz graphiql-3.8.3/package/graphiql.min.css
gz react-18.3.1/package/umd/react.production.min.js
gz react-dom-18.3.1/package/umd/react-dom.production.min.js
gz graphql-ws-5.16.0/package/umd/graphql-ws.min.js
cp graphiql-3.8.3/package/LICENSE "$here/LICENSE-graphiql"
cp react-18.3.1/package/LICENSE "$here/LICENSE-react"
cp graphql-ws-5.16.0/package/LICENSE.md "$here/LICENSE-graphql-ws"
echo "assets refreshed in $here"
