package upstream

import (
	"context"
	"slices"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
)

func TestHooksSetOneAtATimeKeepTheOthersAndWithHooksReplacesThemAll(t *testing.T) {
	var got []string
	progress := func(Progress) { got = append(got, "progress") }
	log := func(LogMessage) { got = append(got, "log") }
	elicit := func(context.Context, Elicitation) (ElicitationAnswer, error) {
		got = append(got, "elicit")
		return ElicitationAnswer{}, nil
	}
	sample := func(context.Context, mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
		got = append(got, "sample")
		return nil, nil
	}
	rt := &RoundTrip{}

	base := context.Background()
	ctx := WithProgress(base, progress)
	ctx = WithLog(ctx, log)
	ctx = WithLogLevel(ctx, "debug")
	ctx = WithElicitation(ctx, elicit)
	ctx = WithoutSampling(ctx, sample)
	ctx = WithRoundTrip(ctx, rt)
	ctx = WithCaller(ctx, "client-1")

	ProgressFrom(ctx)(Progress{})
	logOf(ctx)(LogMessage{})
	_, _ = ElicitationFrom(ctx)(ctx, Elicitation{})
	_, _ = SamplingFrom(ctx)(ctx, mcp.CreateMessageRequest{})
	if want := []string{"progress", "log", "elicit", "sample"}; !slices.Equal(got, want) {
		t.Fatalf("the hooks called %v, want %v", got, want)
	}
	if logLevelOf(ctx) != "debug" || roundTripOf(ctx, mcp.MethodToolsCall) != rt || callerOf(ctx) != "client-1" {
		t.Errorf("level %q, round %p, caller %v: not those set", logLevelOf(ctx), roundTripOf(ctx, mcp.MethodToolsCall), callerOf(ctx))
	}
	if declaresSampling(ctx) {
		t.Error("a caller without sampling declares it")
	}
	if declaresSampling(WithSampling(ctx, sample)) == false || declaresSampling(ctx) {
		t.Error("WithSampling does not declare sampling, or changed the context it was given")
	}

	// A context made before the others is left as it was.
	if ProgressFrom(base) != nil || logOf(WithProgress(base, progress)) != nil {
		t.Error("an earlier context gained a hook set after it")
	}

	replaced := WithHooks(ctx, &Hooks{LogLevel: "error"})
	if ProgressFrom(replaced) != nil || ElicitationFrom(replaced) != nil || callerOf(replaced) != nil || logLevelOf(replaced) != "error" {
		t.Error("WithHooks kept hooks of the context underneath")
	}
}
