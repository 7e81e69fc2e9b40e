#!/bin/sh
# Installs uv (and so uvx, which runs MCP servers published on PyPI) into a
# virtual environment at <dir>, with the Python the system has. The
# Dockerfile's runtime stage runs this script; so does the test of the
# deployment (integration/deploy_test.go), outside a container.
#
#   deploy/install-uv.sh <dir> [<uv version>]
set -eu

dir=$1
version=${2:-${UV_VERSION:-0.13.9}}

python3 -m venv "$dir"
"$dir/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir "uv==$version"
"$dir/bin/uv" --version
"$dir/bin/uvx" --version
