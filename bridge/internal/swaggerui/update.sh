#!/usr/bin/env bash
# update.sh regenerates dist/ from the swagger-ui-dist npm package.
#
# Usage: bridge/internal/swaggerui/update.sh [VERSION]
#
# VERSION defaults to PINNED_VERSION below. To move to another release, bump
# PINNED_VERSION, run this script, run `go test ./bridge/internal/swaggerui/`, and
# commit the script together with everything it wrote into dist/.
#
# Only what the Go package serves is kept: the bundle and the stylesheet,
# gzipped deterministically (gzip -9 -n: no file name, no timestamp), plus the
# package's license files and a VERSION file. Nothing else from the tarball
# (standalone preset, source maps, favicons, ES bundles, ...) is copied.
set -euo pipefail

PINNED_VERSION="5.35.0"

version="${1:-$PINNED_VERSION}"
if [[ ! "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
	echo "update.sh: version must be an exact x.y.z release, got: $version" >&2
	exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dist="$here/dist"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(
	cd "$work"
	npm pack --silent "swagger-ui-dist@$version" >pack.out
	tar -xzf "$(tail -n 1 pack.out)"
)
pkg="$work/package"

# Make sure we got what we asked for before touching dist/.
got="$(node -p 'require(process.argv[1]).version' "$pkg/package.json")"
if [[ "$got" != "$version" ]]; then
	echo "update.sh: asked for $version, tarball holds $got" >&2
	exit 1
fi
for f in swagger-ui-bundle.js swagger-ui.css LICENSE; do
	if [[ ! -s "$pkg/$f" ]]; then
		echo "update.sh: $f missing from swagger-ui-dist@$version" >&2
		exit 1
	fi
done
if ! grep -q "PACKAGE_VERSION:\"$version\"" "$pkg/swagger-ui-bundle.js"; then
	echo "update.sh: swagger-ui-bundle.js does not declare version $version" >&2
	exit 1
fi

# Build the new dist/ next to the old one, then swap, so a failure halfway
# never leaves a mix of two versions behind.
new="$work/dist"
mkdir "$new"
gzip -9 -n -c "$pkg/swagger-ui-bundle.js" >"$new/swagger-ui-bundle.js.gz"
gzip -9 -n -c "$pkg/swagger-ui.css" >"$new/swagger-ui.css.gz"
# License files: the package's own, and the notices of the third-party code
# compiled into the bundle we ship.
for f in LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt; do
	if [[ -f "$pkg/$f" ]]; then
		cp "$pkg/$f" "$new/$f"
	fi
done
printf '%s\n' "$version" >"$new/VERSION"
chmod 0644 "$new"/*

rm -rf "$dist"
mv "$new" "$dist"

echo "swagger-ui-dist $version written to $dist:"
ls -l "$dist"
