package caddymcpo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"go.uber.org/zap"
)

// desktopEntry is one entry of a Claude Desktop / mcpo configuration
// file's "mcpServers" object.
type desktopEntry struct {
	Command       string            `json:"command"`
	Args          []string          `json:"args"`
	Env           map[string]string `json:"env"`
	Cwd           string            `json:"cwd"`
	Type          string            `json:"type"`
	Transport     string            `json:"transport"`
	URL           string            `json:"url"`
	Headers       map[string]string `json:"headers"`
	DisabledTools []string          `json:"disabledTools"`
	DisabledSnake []string          `json:"disabled_tools"`
	Tools         []string          `json:"tools"`
	Disabled      bool              `json:"disabled"`
}

// knownKeys are the entry keys read; others are reported, not fatal.
var knownKeys = []string{
	"command", "args", "env", "cwd", "type", "transport", "url", "headers",
	"disabledTools", "disabled_tools", "tools", "disabled",
}

// loadConfigFile reads the servers of a Claude Desktop / mcpo configuration
// file, in file order. A "url" without a "type" means Streamable HTTP with a
// fallback to HTTP+SSE.
func loadConfigFile(path string, log *zap.Logger) ([]*ServerConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var file struct {
		MCPServers json.RawMessage `json:"mcpServers"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("config file %s: %s", path, jsonErrorAt(data, err))
	}
	names, entries, err := orderedObject(file.MCPServers)
	if err != nil {
		return nil, fmt.Errorf("config file %s: \"mcpServers\": %w", path, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("config file %s has no servers in \"mcpServers\"", path)
	}
	var servers []*ServerConfig
	for i, name := range names {
		s, err := parseDesktopEntry(name, entries[i], log.With(zap.String("config_file", path)))
		if err != nil {
			return nil, fmt.Errorf("config file %s: server %q: %w", path, name, err)
		}
		if s != nil {
			servers = append(servers, s)
		}
	}
	return servers, nil
}

// parseDesktopEntry converts and validates one entry; a disabled entry
// gives nil.
func parseDesktopEntry(name string, raw json.RawMessage, log *zap.Logger) (*ServerConfig, error) {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return nil, errors.New("must be a JSON object")
	}
	var unknown []string
	for k := range keys {
		if !slices.Contains(knownKeys, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		log.Warn("ignoring unsupported keys of an MCP server entry", zap.String("server", name), zap.Strings("keys", unknown))
	}
	var d desktopEntry
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, err
	}
	if d.Disabled {
		log.Info("MCP server entry is disabled", zap.String("server", name))
		return nil, nil
	}
	s := &ServerConfig{
		Name:          name,
		Command:       d.Command,
		Args:          d.Args,
		Env:           d.Env,
		Dir:           d.Cwd,
		URL:           d.URL,
		Headers:       d.Headers,
		Tools:         d.Tools,
		DisabledTools: d.DisabledTools,
	}
	if s.DisabledTools == nil {
		s.DisabledTools = d.DisabledSnake
	}
	kind := d.Type
	if kind == "" {
		kind = d.Transport
	}
	switch {
	case kind != "":
		s.Transport = kind
	case d.URL != "" && d.Command == "":
		s.Transport = "auto"
	}
	return s, s.Validate()
}

// orderedObject splits a JSON object into its keys, in order, and values.
func orderedObject(raw json.RawMessage) ([]string, []json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil, errors.New("missing")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, nil, errors.New("must be a JSON object")
	}
	var names []string
	var values []json.RawMessage
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		name := t.(string) // object keys are strings
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, err
		}
		if seen[name] {
			return nil, nil, fmt.Errorf("server %q appears twice", name)
		}
		seen[name] = true
		names = append(names, name)
		values = append(values, v)
	}
	return names, values, nil
}

// jsonErrorAt describes a JSON decoding error with its line and column.
func jsonErrorAt(data []byte, err error) string {
	var offset int64
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		offset = syntax.Offset
	case errors.As(err, &typ):
		offset = typ.Offset
	default:
		return err.Error()
	}
	// The offset counts the offending byte itself, unless the input ended.
	end := min(int(offset), len(data))
	if end > 0 && !strings.Contains(err.Error(), "unexpected end") {
		end--
	}
	line, col := 1, 1
	for _, c := range data[:end] {
		if c == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return fmt.Sprintf("line %d, column %d: %v", line, col, err)
}
