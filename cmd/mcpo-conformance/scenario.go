package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// runScenario connects to the mock server and does what the scenario
// expects of a client.
func runScenario(ctx context.Context, cfg *config, log *zap.Logger) error {
	c, err := newClient(cfg, log)
	if err != nil {
		return err
	}
	defer c.close()
	if err := c.connect(ctx); err != nil {
		return err
	}
	switch cfg.Scenario {
	case "http-custom-headers":
		return c.callListed(ctx, cfg.Context.ToolCalls)
	case "sep-2322-client-request-state":
		// test_mrtr_unrelated is called from the first elicitation, between
		// the rounds of a multi round-trip call (see confirmMRTR).
		return c.callAll(ctx, []string{"test_mrtr_echo_state", "test_mrtr_no_state", "test_mrtr_no_result_type"})
	case "json-schema-2020-12-preservation":
		return c.echoSchemas(ctx)
	case "json-schema-ref-no-deref":
		// The scenario is the listing: its tool is never called, and the
		// network $ref in its schema must never be fetched.
		return nil
	case "http-standard-headers":
		// Every request that names something: tools, resources, prompts.
		return errors.Join(c.callAll(ctx, nil), c.readResources(ctx), c.getPrompts(ctx))
	default:
		return c.callAll(ctx, nil)
	}
}

// echoTool is the tool json-schema-2020-12-preservation offers to send back
// the schemas the client holds.
const echoTool = "json_schema_echo"

// echoSchemas sends the input schema of every other tool back through the
// echo tool, exactly as the upstream holds it: the schemas the proxy
// projects into its OpenAPI document start from these bytes.
func (c *client) echoSchemas(ctx context.Context) error {
	ts := c.up.Tools()
	if ts == nil {
		return errors.New("no tool listing")
	}
	echoed := 0
	for _, t := range ts.Tools {
		if t.Name == echoTool || t.InputSchema == nil {
			continue
		}
		args, err := json.Marshal(map[string]json.RawMessage{"schema": t.InputSchema})
		if err != nil {
			return fmt.Errorf("tool %s: %w", t.Name, err)
		}
		if _, err := c.callTool(ctx, echoTool, args); err != nil {
			return err
		}
		echoed++
	}
	if echoed == 0 {
		return errors.New("no tool schema to echo")
	}
	return nil
}

// confirmMRTR answers the confirmations the multi round-trip tools ask
// for. The first time, it calls test_mrtr_unrelated before answering, so
// that a call is made between the rounds of another: it must carry
// nothing of that other call's state.
func (c *client) confirmMRTR(ctx context.Context, e upstream.Elicitation) (upstream.ElicitationAnswer, error) {
	if c.unrelatedCalled.CompareAndSwap(false, true) {
		if _, err := c.callTool(ctx, "test_mrtr_unrelated", json.RawMessage(`{}`)); err != nil {
			return upstream.ElicitationAnswer{}, err
		}
	}
	return upstream.ElicitationAnswer{Action: upstream.ElicitAccept, Content: map[string]any{"confirmed": true}}, nil
}

// readResources reads every resource the server lists.
func (c *client) readResources(ctx context.Context) error {
	list, err := c.up.ListResources(ctx)
	if err != nil {
		return fmt.Errorf("listing resources: %w", err)
	}
	var errs []error
	for _, raw := range list {
		var r struct {
			URI string `json:"uri"`
		}
		if err := json.Unmarshal(raw, &r); err != nil || r.URI == "" {
			errs = append(errs, fmt.Errorf("a listed resource has no uri: %s", raw))
			continue
		}
		res, err := c.up.ReadResource(ctx, r.URI)
		if err != nil {
			errs = append(errs, fmt.Errorf("reading %s: %w", r.URI, err))
			continue
		}
		c.log.Info("resource read", zap.String("uri", r.URI), zap.Int("bytes", len(res)))
	}
	return errors.Join(errs...)
}

// getPrompts gets every prompt the server lists, with placeholder values
// for its required arguments.
func (c *client) getPrompts(ctx context.Context) error {
	list, err := c.up.ListPrompts(ctx)
	if err != nil {
		return fmt.Errorf("listing prompts: %w", err)
	}
	var errs []error
	for _, raw := range list {
		var p struct {
			Name      string `json:"name"`
			Arguments []struct {
				Name     string `json:"name"`
				Required bool   `json:"required"`
			} `json:"arguments"`
		}
		if err := json.Unmarshal(raw, &p); err != nil || p.Name == "" {
			errs = append(errs, fmt.Errorf("a listed prompt has no name: %s", raw))
			continue
		}
		args := map[string]string{}
		for _, a := range p.Arguments {
			if a.Required {
				args[a.Name] = "test"
			}
		}
		res, err := c.up.GetPrompt(ctx, p.Name, args)
		if err != nil {
			errs = append(errs, fmt.Errorf("getting prompt %s: %w", p.Name, err))
			continue
		}
		c.log.Info("prompt got", zap.String("prompt", p.Name), zap.Int("bytes", len(res)))
	}
	return errors.Join(errs...)
}

// callListed makes the calls the scenario's context lists, in order. Every
// call is made; their errors are returned.
func (c *client) callListed(ctx context.Context, calls []toolCall) error {
	if len(calls) == 0 {
		return errors.New("the scenario context lists no tool calls")
	}
	var errs []error
	for _, tc := range calls {
		args := tc.Arguments
		if len(args) == 0 || string(args) == "null" {
			args = json.RawMessage(`{}`)
		}
		if _, err := c.callTool(ctx, tc.Name, args); err != nil {
			c.log.Warn("tool call failed", zap.String("tool", tc.Name), zap.Error(err))
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// callAll calls the listed tools named in order (every listed tool, in the
// server's order, when order is nil), with arguments made up from their
// input schemas. Every call is made; their errors are returned.
func (c *client) callAll(ctx context.Context, order []string) error {
	ts := c.up.Tools()
	if ts == nil {
		return errors.New("no tool listing")
	}
	byName := map[string]*upstream.Tool{}
	all := order == nil
	for _, t := range ts.Tools {
		byName[t.Name] = t
		if all {
			order = append(order, t.Name)
		}
	}
	var errs []error
	for _, name := range order {
		t := byName[name]
		if t == nil {
			errs = append(errs, fmt.Errorf("the server lists no tool %q", name))
			continue
		}
		args, err := sampleArguments(t.InputSchema)
		if err != nil {
			errs = append(errs, fmt.Errorf("tool %s: %w", name, err))
			continue
		}
		if _, err := c.callTool(ctx, name, args); err != nil {
			c.log.Warn("tool call failed", zap.String("tool", name), zap.Error(err))
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sampleArguments makes arguments that satisfy an input schema's required
// properties by type, as a person filling a form with placeholder values
// would: numbers 1, strings "test", booleans true.
func sampleArguments(schema json.RawMessage) (json.RawMessage, error) {
	if len(schema) == 0 {
		return json.RawMessage(`{}`), nil
	}
	var s struct {
		Properties map[string]struct {
			Type    any   `json:"type"`
			Enum    []any `json:"enum"`
			Default any   `json:"default"`
		} `json:"properties"`
		Required []string `json:"required"`
	}
	if err := json.Unmarshal(schema, &s); err != nil {
		return nil, fmt.Errorf("input schema: %w", err)
	}
	args := map[string]any{}
	for _, name := range s.Required {
		p := s.Properties[name]
		switch {
		case p.Default != nil:
			args[name] = p.Default
		case len(p.Enum) > 0:
			args[name] = p.Enum[0]
		default:
			args[name] = sampleValue(p.Type)
		}
	}
	return json.Marshal(args)
}

// sampleValue is a placeholder value of a JSON Schema type (a name or a
// list of names).
func sampleValue(typ any) any {
	var types []string
	switch t := typ.(type) {
	case string:
		types = []string{t}
	case []any:
		for _, v := range t {
			if s, ok := v.(string); ok {
				types = append(types, s)
			}
		}
	}
	switch {
	case slices.Contains(types, "number"), slices.Contains(types, "integer"):
		return 1
	case slices.Contains(types, "boolean"):
		return true
	case slices.Contains(types, "array"):
		return []any{}
	case slices.Contains(types, "object"):
		return map[string]any{}
	}
	return "test"
}
