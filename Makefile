# caddy-mcpo: build, run the example, test, benchmark.
#
#   make run    build ./caddy and serve examples/Caddyfile on :8080
#   make test   the whole test suite, installing its test peers first
#   make fuzz   fuzz the schema converter at length
#   make build  just ./caddy
#
# Test peers (MCP servers from npm and PyPI, and uv to run the latter) are
# installed into .testpeers/, which git ignores. Nothing is installed
# system-wide.

GO       ?= go
PEERS    := $(CURDIR)/.testpeers
PEERPATH := $(PEERS)/venv/bin:$(PEERS)/node_modules/.bin:$(PATH)

# Pinned versions of the test peers.
SERVER_EVERYTHING := @modelcontextprotocol/server-everything@2026.8.31
# The OpenAPI linters every generated document must pass (integration/lint/).
REDOCLY_CLI       := @redocly/cli@2.77.0
SPECTRAL_CLI      := @stoplight/spectral-cli@6.16.3
UV_VERSION        := 0.13.9
TIME_SERVER       := mcp-server-time==2026.10.19

GO_SOURCES := $(shell find . -name '*.go' -not -path './.testpeers/*') go.mod go.sum

.PHONY: build run test test-short fuzz peers clean

build: caddy

caddy: $(GO_SOURCES) $(wildcard bridge/swaggerui/dist/*)
	$(GO) build -o caddy ./cmd/caddy

# The example uses uvx and npx; the peers provide uvx if the machine has none.
run: caddy peers
	PATH="$(PEERPATH)" ./caddy run --config examples/Caddyfile --adapter caddyfile

peers: $(PEERS)/.installed

$(PEERS)/.installed: Makefile
	@mkdir -p $(PEERS)
	[ -f $(PEERS)/package.json ] || echo '{"name": "caddy-mcpo-test-peers", "private": true}' > $(PEERS)/package.json
	cd $(PEERS) && npm install --no-audit --no-fund --no-package-lock --loglevel=error $(SERVER_EVERYTHING) $(REDOCLY_CLI) $(SPECTRAL_CLI)
	[ -x $(PEERS)/venv/bin/python ] || python3 -m venv $(PEERS)/venv
	$(PEERS)/venv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	# Fetch mcp-server-time once, so that no test waits for a download.
	PATH="$(PEERPATH)" uvx --from '$(TIME_SERVER)' mcp-server-time --help >/dev/null
	touch $@

test: peers
	PATH="$(PEERPATH)" MCPO_TEST_PEERS=$(PEERS) MCPO_TIME_SERVER='$(TIME_SERVER)' \
		$(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME_SHORT)

# Fuzz the schema converter and validator, and operation naming: briefly in
# `make test`, at length with `make fuzz` (make fuzz FUZZTIME=30m).
FUZZTIME       ?= 5m
FUZZTIME_SHORT := 20s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzInput$$' -fuzztime $(FUZZTIME) ./bridge/schema/
	$(GO) test -run '^$$' -fuzz '^FuzzOperationID$$' -fuzztime $(FUZZTIME) ./bridge/openapi/

# Unit tests only: no peers, no Caddy instances.
test-short:
	$(GO) test -short -count=1 ./...

clean:
	rm -rf caddy $(PEERS)
