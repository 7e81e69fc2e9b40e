#!/bin/sh
# Builds Caddy with caddy-mcpo from a checkout of this repository, the way
# users build it: with xcaddy, the checkout standing in for the module
# (`--with <module>@v0.0.0=<dir>`), so that no module proxy is asked for a
# module that is not published, or not served where the build runs. The
# Caddy version is the one the checkout's go.mod requires. The build must
# list the module's four Caddy modules.
#
# The Dockerfile's build stage runs this script, and so does `make xcaddy`
# (part of `make test`), so the image's build step is tested on every run.
#
#   deploy/build-caddy.sh <checkout> <output binary>
#
# XCADDY names the xcaddy binary (default: xcaddy on PATH, installed at
# XCADDY_VERSION with go install when absent).
set -eu

src=$(cd "$1" && pwd)
out=$2
module=github.com/caddy-mcpo/caddy-mcpo
XCADDY_VERSION=${XCADDY_VERSION:-v0.4.5}

caddy_version=$(awk '$1 == "github.com/caddyserver/caddy/v2" {print $2}' "$src/go.mod")
[ -n "$caddy_version" ] || { echo "build-caddy.sh: $src/go.mod requires no github.com/caddyserver/caddy/v2" >&2; exit 1; }

xcaddy=${XCADDY:-}
if [ -z "$xcaddy" ]; then
	if command -v xcaddy >/dev/null 2>&1; then
		xcaddy=xcaddy
	else
		GOBIN=$(go env GOPATH)/bin go install "github.com/caddyserver/xcaddy/cmd/xcaddy@$XCADDY_VERSION"
		xcaddy=$(go env GOPATH)/bin/xcaddy
	fi
fi

# xcaddy builds in a temporary module of its own; run it outside the
# checkout so that the checkout's go.mod does not capture it.
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
cd "${TMPDIR:-/tmp}"
"$xcaddy" build "$caddy_version" --with "$module@v0.0.0=$src" --output "$out"

modules=$("$out" list-modules --versions | grep -E '^(http\.handlers\.mcpo|admin\.api\.mcpo|mcpo|caddy\.storage\.mcpo_redis) ' || true)
echo "$modules"
if [ "$(printf '%s\n' "$modules" | grep -c .)" -ne 4 ]; then
	echo "build-caddy.sh: $out does not list caddy-mcpo's four modules (http.handlers.mcpo, admin.api.mcpo, mcpo, caddy.storage.mcpo_redis)" >&2
	exit 1
fi
