#!/usr/bin/env bash
# The front-door crate's features keep their promise: a client build compiles no server stack,
# a server build no HTTP client, and every feature builds on its own. Fails loudly otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "check-features: FAILED: $*" >&2; exit 1; }
tree() { cargo tree -q -e normal -p sync-engine --no-default-features "$@"; }

client=$(tree --features folder,http-client,fs-remote)
if grep -qE '^[^a-z]*(axum|axum-core|governor) v' <<<"$client"; then
    fail "a client-only build (folder,http-client,fs-remote) pulls in the server stack: $(grep -E 'axum|governor' <<<"$client" | head -3 | tr -s ' ')"
fi
server=$(tree --features sqlite,http-server)
if grep -qE '^[^a-z]*(reqwest|backon) v' <<<"$server"; then
    fail "a server-only build (sqlite,http-server) pulls in the HTTP client: $(grep -E 'reqwest|backon' <<<"$server" | head -3 | tr -s ' ')"
fi
echo "check-features: client build $(grep -c ' v' <<<"$client") crate lines without axum; server build without reqwest"

for features in "" sqlite folder fs-remote http-client http-server postgres records; do
    echo "check-features: cargo check -p sync-engine --no-default-features ${features:+--features $features}"
    cargo check -q -p sync-engine --no-default-features ${features:+--features "$features"} \
        || fail "sync-engine does not build with --no-default-features ${features:+--features $features}"
done
for features in client server; do
    cargo check -q -p transport-http --no-default-features --features "$features" \
        || fail "transport-http does not build with only the $features feature"
done
echo "check-features: ok"
