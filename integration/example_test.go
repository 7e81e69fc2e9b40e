package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// TestExampleCaddyfileValidates checks what `caddy validate` checks on the
// Caddyfile `make run` serves, and that validating it starts no process.
func TestExampleCaddyfileValidates(t *testing.T) {
	path := filepath.Join("..", "examples", "Caddyfile")
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	adapted, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(body, map[string]any{"filename": path})
	if err != nil {
		t.Fatalf("adapting %s: %v", path, err)
	}
	for _, w := range warnings {
		t.Errorf("%s: %s", path, w)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatal(err)
	}
	before := len(descendants(os.Getpid()))
	if err := caddy.Validate(&cfg); err != nil {
		t.Fatalf("validating %s: %v", path, err)
	}
	if after := descendants(os.Getpid()); len(after) > before {
		t.Errorf("validating the configuration started processes: %v", after)
	}
}
