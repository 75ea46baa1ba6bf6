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
tls_server=$(tree --features sqlite,http-server-tls)
if grep -qE '^[^a-z]*(reqwest|backon) v' <<<"$tls_server"; then
    fail "an HTTPS server build (sqlite,http-server-tls) pulls in the HTTP client: $(grep -E 'reqwest|backon' <<<"$tls_server" | head -3 | tr -s ' ')"
fi
echo "check-features: client build $(grep -c ' v' <<<"$client") crate lines without axum; server builds without reqwest"
# TLS on both sides shares the rustls that reqwest brings: never two versions of it.
if cargo tree -q -d --workspace --all-features | grep -qE '^rustls v'; then
    fail "two versions of rustls in the workspace: $(cargo tree -q -d --workspace --all-features | grep -E '^rustls v' | tr '\n' ' ')"
fi

for features in "" sqlite folder fs-remote http-client http-server http-server-tls postgres records; do
    echo "check-features: cargo check -p sync-engine --no-default-features ${features:+--features $features}"
    cargo check -q -p sync-engine --no-default-features ${features:+--features "$features"} \
        || fail "sync-engine does not build with --no-default-features ${features:+--features $features}"
done
for features in client server tls; do
    cargo check -q -p transport-http --no-default-features --features "$features" \
        || fail "transport-http does not build with only the $features feature"
done
echo "check-features: ok"
