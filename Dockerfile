# syntax=docker/dockerfile:1
#
# Caddy with caddy-mcpo, built with xcaddy from this checkout, running as a
# user without privileges, with uv (for uvx) and Node (for npx) so that MCP
# servers published on PyPI and npm run as they are configured.
#
#   docker build -t caddy-mcpo .
#   docker run --rm -p 8080:8080 -e OWUI_JWT_SECRET=... caddy-mcpo
#
# deploy/compose.yaml wires it to Open WebUI. The build steps are scripts in
# deploy/, which `make test` runs outside a container as well
# (integration/deploy_test.go): keep the steps in the scripts, not here.

# Versions; the test checks them against go.mod and the Makefile.
ARG GO_VERSION=1.26
ARG NODE_VERSION=22
ARG XCADDY_VERSION=v0.4.5
ARG UV_VERSION=0.13.9

# --- build: Caddy with this module, by xcaddy -------------------------------
FROM golang:${GO_VERSION}-bookworm AS build
ARG XCADDY_VERSION
RUN go install github.com/caddyserver/xcaddy/cmd/xcaddy@${XCADDY_VERSION}
WORKDIR /src
# The module's sources only: bench/, docs/ and the tests' peers stay out
# (.dockerignore).
COPY . .
RUN XCADDY=/go/bin/xcaddy deploy/build-caddy.sh /src /out/caddy

# --- runtime: Node (npx) and Debian's Python with uv (uvx) -----------------
FROM node:${NODE_VERSION}-bookworm-slim
ARG UV_VERSION
RUN apt-get update \
	&& apt-get install -y --no-install-recommends ca-certificates python3 python3-venv libcap2-bin tini \
	&& rm -rf /var/lib/apt/lists/*
COPY deploy/install-uv.sh /usr/local/lib/caddy-mcpo/install-uv.sh
RUN /usr/local/lib/caddy-mcpo/install-uv.sh /opt/uv ${UV_VERSION} \
	&& ln -s /opt/uv/bin/uv /opt/uv/bin/uvx /usr/local/bin/
COPY --from=build /out/caddy /usr/bin/caddy
# Ports below 1024 (80, 443) without root.
RUN setcap cap_net_bind_service=+ep /usr/bin/caddy \
	&& groupadd --system --gid 10001 mcpo \
	&& useradd --system --uid 10001 --gid mcpo --home-dir /home/mcpo --create-home mcpo \
	&& mkdir -p /etc/caddy /data /config \
	&& chown mcpo:mcpo /data /config
COPY deploy/Caddyfile /etc/caddy/Caddyfile

# Caddy keeps certificates, OAuth tokens and tool listings in /data;
# uv and npm keep the servers they fetch in the user's cache.
ENV XDG_DATA_HOME=/data \
	XDG_CONFIG_HOME=/config \
	HOME=/home/mcpo
VOLUME ["/data", "/home/mcpo"]
USER mcpo:mcpo
WORKDIR /home/mcpo
EXPOSE 8080
# tini reaps the MCP servers' own children and passes signals on, so that
# `docker stop` lets Caddy stop its servers cleanly.
ENTRYPOINT ["tini", "--", "caddy"]
CMD ["run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
