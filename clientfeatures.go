package caddymcpo

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// The elicitation policies of ServerConfig.Elicitation.
const (
	elicitOff      = "off"
	elicitDecline  = "decline"
	elicitDefaults = "defaults"
)

// The sampling settings of ServerConfig.Sampling.
const (
	samplingOff   = "off"
	samplingRelay = "relay"
)

// validateClientFeatures checks what the proxy declares to the server as
// its client: roots, the elicitation policy and sampling.
func (s *ServerConfig) validateClientFeatures() error {
	for _, d := range s.Roots {
		if !filepath.IsAbs(d) {
			return fieldErr(fmt.Errorf("roots %q: want an absolute path", d), "roots")
		}
	}
	switch s.Elicitation {
	case "", elicitOff, elicitDecline, elicitDefaults:
	default:
		return fieldErr(fmt.Errorf("elicitation %q: want off, decline or defaults", s.Elicitation), "elicitation")
	}
	switch s.Sampling {
	case "", samplingOff, samplingRelay:
		return nil
	}
	return fieldErr(fmt.Errorf("sampling %q: want off or relay", s.Sampling), "sampling")
}

// elicitPolicy is the answer of policy to a server's elicitations; nil
// declares no elicitation capability.
func elicitPolicy(policy string) upstream.ElicitFunc {
	switch policy {
	case elicitDecline:
		return func(context.Context, upstream.Elicitation) (upstream.ElicitationAnswer, error) {
			return upstream.ElicitationAnswer{Action: upstream.ElicitDecline}, nil
		}
	case elicitDefaults:
		return func(_ context.Context, e upstream.Elicitation) (upstream.ElicitationAnswer, error) {
			if e.Mode != "form" {
				// Nobody can open the page for the caller.
				return upstream.ElicitationAnswer{Action: upstream.ElicitDecline}, nil
			}
			if !defaultsSuffice(e.RequestedSchema) {
				return upstream.ElicitationAnswer{Action: upstream.ElicitDecline}, nil
			}
			// The Upstream fills in the schema's defaults.
			return upstream.ElicitationAnswer{Action: upstream.ElicitAccept, Content: map[string]any{}}, nil
		}
	}
	return nil
}

// defaultsSuffice reports whether a form's schema gives a default to each
// property it requires, so that accepting with the defaults answers it.
func defaultsSuffice(schema json.RawMessage) bool {
	var s struct {
		Required   []string `json:"required"`
		Properties map[string]struct {
			Default json.RawMessage `json:"default"`
		} `json:"properties"`
	}
	if len(schema) == 0 || json.Unmarshal(schema, &s) != nil {
		return false
	}
	for _, name := range s.Required {
		if len(s.Properties[name].Default) == 0 {
			return false
		}
	}
	return true
}
