package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"
)

// session is one live connection to a server: an initialized mcp-go client,
// and for stdio the process behind it. A session that dies is never revived;
// the Upstream starts a new one.
type session struct {
	client *client.Client      // nil until initialized
	tr     transport.Interface // the client's transport
	proc   *process            // nil for HTTP transports
	info   ServerInfo
	caps   mcp.ServerCapabilities

	ctx    context.Context // ends when the session is closed
	cancel context.CancelFunc

	done    chan struct{} // closed when the session died or was closed
	endOnce sync.Once
	endErr  error // why it ended; set before done closes

	relist chan struct{} // a tools/list_changed arrived
}

// end marks the session dead with err. Only the first call counts.
func (s *session) end(err error) {
	s.endOnce.Do(func() {
		s.endErr = err
		close(s.done)
	})
}

// err returns why the session ended.
func (s *session) err() error {
	select {
	case <-s.done:
		return s.endErr
	default:
		return nil
	}
}

// close shuts the session down: the client (which for HTTP ends the
// server-side session) and, for stdio, the process group.
func (s *session) close(t StopTimeouts, log *zap.Logger) {
	s.end(errors.New("session closed"))
	if s.tr != nil {
		_ = s.tr.Close() // what the client's Close does
	}
	if s.proc != nil {
		select {
		case <-s.proc.exited:
			s.proc.reapGroup(t)
		default:
			s.proc.stop(t, log)
		}
	}
	s.cancel()
}

// callTool calls a tool and returns its raw result. JSON-RPC errors come back
// as *RPCError with their code and data intact.
func (s *session) callTool(ctx context.Context, name string, args json.RawMessage) (*CallResult, error) {
	cctx, capt := withCapture(ctx)
	capt.stand = emptyCallResult
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	_, err := s.client.CallTool(cctx, req)
	if resp := capt.last(); resp != nil {
		// The answer arrived; mcp-go's own decoding of it does not matter.
		if resp.Error != nil {
			if s.proc == nil && forgotSession(resp.Error) {
				return nil, fmt.Errorf("%w: %s", errSessionExpired, resp.Error.Message)
			}
			return nil, newRPCError(resp.Error)
		}
		res, derr := decodeCallResult(resp.Result)
		if derr != nil {
			var ir *InputRequiredError
			if errors.As(derr, &ir) {
				return nil, derr
			}
			return nil, fmt.Errorf("decoding tools/call result: %w", derr)
		}
		return res, nil
	}
	if err == nil {
		return nil, errors.New("tools/call: no response")
	}
	if errors.Is(err, transport.ErrSessionTerminated) {
		return nil, fmt.Errorf("%w: %v", errSessionExpired, err)
	}
	if errors.Is(err, transport.ErrTransportClosed) {
		s.end(err)
	}
	return nil, err
}

// emptyCallResult is what mcp-go decodes of a tools/call answer: the
// session decodes the real one from the capture.
var emptyCallResult = json.RawMessage(`{"content":[]}`)

// errSessionExpired marks a call the server refused because it no longer
// knows the Streamable HTTP session: it did not run it.
var errSessionExpired = errors.New("the server no longer knows the session")

// forgotSession recognizes the error some servers answer an unknown session
// with (HTTP 400 with a JSON-RPC error naming the session, where the
// specification says 404).
func forgotSession(d *mcp.JSONRPCErrorDetails) bool {
	m := strings.ToLower(d.Message)
	if !strings.Contains(m, "session") {
		return false
	}
	for _, w := range []string{"no valid", "not found", "unknown", "invalid", "expired", "terminated"} {
		if strings.Contains(m, w) {
			return true
		}
	}
	return false
}
