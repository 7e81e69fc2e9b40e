# caddy-mcpo: build, run the example, test, benchmark.
#
#   make run    build ./caddy and serve examples/Caddyfile on :8080
#   make test   the whole test suite, installing its test peers first
#   make fuzz   fuzz the schema converter at length
#   make bench  measure caddy-mcpo against mcpo and a direct MCP client,
#               writing docs/bench/ (minutes; not part of make test)
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

.PHONY: build run test test-short fuzz peers bench clean

build: caddy

caddy: $(GO_SOURCES) $(wildcard bridge/swaggerui/dist/*)
	$(GO) build -o caddy ./cmd/caddy

# The example uses uvx and npx; the peers provide uvx if the machine has none.
run: caddy peers
	PATH="$(PEERPATH)" ./caddy run --config examples/Caddyfile --adapter caddyfile

peers: $(PEERS)/.installed

# uv (for uvx) in a virtual environment of the peers.
UV := $(PEERS)/venv/bin/uv
$(UV): Makefile
	[ -x $(PEERS)/venv/bin/python ] || python3 -m venv $(PEERS)/venv
	$(PEERS)/venv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	touch $@

$(PEERS)/.installed: Makefile $(UV)
	@mkdir -p $(PEERS)
	[ -f $(PEERS)/package.json ] || echo '{"name": "caddy-mcpo-test-peers", "private": true}' > $(PEERS)/package.json
	cd $(PEERS) && npm install --no-audit --no-fund --no-package-lock --loglevel=error $(SERVER_EVERYTHING) $(REDOCLY_CLI) $(SPECTRAL_CLI)
	# Fetch mcp-server-time once, so that no test waits for a download.
	PATH="$(PEERPATH)" uvx --from '$(TIME_SERVER)' mcp-server-time --help >/dev/null
	touch $@

test: peers
	PATH="$(PEERPATH)" MCPO_TEST_PEERS=$(PEERS) MCPO_TIME_SERVER='$(TIME_SERVER)' \
		$(GO) test -race -count=1 -timeout 30m ./...
	cd bench && $(GO) vet ./... && $(GO) test -count=1 ./...
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME_SHORT)

# Fuzz the schema converter and validator, and operation naming: briefly in
# `make test`, at length with `make fuzz` (make fuzz FUZZTIME=30m).
FUZZTIME       ?= 5m
FUZZTIME_SHORT := 20s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzInput$$' -fuzztime $(FUZZTIME) ./bridge/schema/
	$(GO) test -run '^$$' -fuzz '^FuzzOperationID$$' -fuzztime $(FUZZTIME) ./bridge/openapi/

# The benchmark harness (bench/, a module of its own) fetches mcpo and
# mcp-server-time with uvx, builds caddy and an echo server, and writes
# docs/bench/results.{md,json,png}; then the Go micro-benchmarks of the
# bridge run, into docs/bench/micro.txt. `make bench BENCHFLAGS=-quick` is
# a smoke run into bench/out/quick.
BENCHFLAGS ?=
bench: $(UV)
	cd bench && PATH="$(PEERPATH)" $(GO) run . -repo $(CURDIR) -time-server '$(TIME_SERVER)' $(BENCHFLAGS)
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./bridge/... | tee docs/bench/micro.txt

# Unit tests only: no peers, no Caddy instances.
test-short:
	$(GO) test -short -count=1 ./...

clean:
	rm -rf caddy $(PEERS)
