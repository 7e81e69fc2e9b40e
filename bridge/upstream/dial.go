package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
)

// clientInfo is how caddy-mcpo introduces itself to servers.
var clientInfo = mcp.Implementation{Name: "caddy-mcpo", Version: "0.1.0"}

// dialer connects sessions for one Upstream.
type dialer struct {
	spec   Spec
	log    func() *zap.Logger // names the server
	stop   StopTimeouts
	elicit ElicitFunc // nil: no elicitation capability
	notify func(s *session, n mcp.JSONRPCNotification)
}

// dial starts a session and initializes it. ctx bounds the start; the
// session itself lives until closed, under parent.
func (d *dialer) dial(parent, ctx context.Context) (*session, error) {
	switch d.spec.Transport {
	case TransportStdio:
		return d.dialStdio(parent, ctx)
	case TransportStreamableHTTP:
		return d.dialStreamable(parent, ctx)
	case TransportSSE:
		protocol := d.spec.Protocol
		if protocol == "" {
			protocol = ProtocolLegacy // HTTP+SSE is a legacy transport
		}
		return d.dialHTTP(parent, ctx, d.newSSE, protocol)
	case TransportAuto:
		s, err := d.dialStreamable(parent, ctx)
		if err == nil || !errors.Is(err, transport.ErrLegacySSEServer) {
			return s, err
		}
		d.log().Info("endpoint refused Streamable HTTP; trying HTTP+SSE",
			zap.String("url", d.spec.Endpoint()))
		s, sseErr := d.dialHTTP(parent, ctx, d.newSSE, ProtocolLegacy)
		if sseErr != nil {
			return nil, fmt.Errorf("streamable HTTP: %v; HTTP+SSE: %w", err, sseErr)
		}
		return s, nil
	}
	return nil, fmt.Errorf("unknown transport %q", d.spec.Transport)
}

func (d *dialer) newSession(parent context.Context) *session {
	ctx, cancel := context.WithCancel(parent)
	return &session{
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
		relist: make(chan struct{}, 1),
	}
}

func (d *dialer) dialStdio(parent, ctx context.Context) (*session, error) {
	s := d.newSession(parent)
	proc, err := startProcess(d.spec, func(line string) {
		d.log().Info(line, zap.String("stream", "stderr"))
	})
	if err != nil {
		s.cancel()
		return nil, err
	}
	s.proc = proc
	// mcp-go's own process handling (exec.CommandContext, SIGTERM to the
	// child only) is bypassed: it gets the pipes, and the process stays ours.
	tr := newTap(transport.NewIO(proc.stdout, proc.stdin, nil), d.log)
	s.tr = tr
	go func() {
		select {
		case <-proc.exited:
			s.end(proc.exitError())
		case <-s.ctx.Done():
		}
	}()

	fail := func(err error) (*session, error) {
		// A server that dies at start says why on stderr.
		exited := proc.exitedWithin(500 * time.Millisecond)
		s.close(d.stop, d.log())
		if exited {
			return nil, &ExitError{
				Err:    fmt.Errorf("%w: the server %v", err, proc.exitError()),
				Stderr: proc.lastStderr(),
			}
		}
		return nil, err
	}
	protocol := d.spec.Protocol
	if protocol == "" {
		protocol = ProtocolLegacy // see ProtocolAuto
	}
	c, err := d.initialize(s, tr, ctx, protocol)
	if err != nil && d.spec.Protocol == "" && isRefusal(err) {
		// The server answered the handshake with an error: it may speak only
		// the stateless 2026-07-28 protocol.
		c, err = d.initialize(s, tr, ctx, ProtocolModern)
	}
	if err != nil {
		return fail(err)
	}
	s.client = c
	return s, nil
}

// dialStreamable connects over Streamable HTTP. A legacy server that says
// its tools may change only sends tools/list_changed on a standing GET
// stream, and sends its own requests (elicitation) there too; mcp-go opens
// that stream only when told before the handshake: such a server is
// dialled again, on the version it negotiated, with the stream.
func (d *dialer) dialStreamable(parent, ctx context.Context) (*session, error) {
	listen := pinnedLegacy(d.spec.Protocol)
	s, err := d.dialHTTP(parent, ctx, d.newStreamable(listen), d.spec.Protocol)
	if err != nil || listen || mcp.IsModernProtocol(s.info.Protocol) || (!toolsMayChange(s.caps) && d.elicit == nil) {
		return s, err
	}
	version := s.info.Protocol
	s.close(d.stop, d.log())
	return d.dialHTTP(parent, ctx, d.newStreamable(true), version)
}

// pinnedModern reports a protocol choice of the stateless era (2026-07-28
// or later).
func pinnedModern(p string) bool {
	return p == ProtocolModern || p != ProtocolLegacy && p != "" && mcp.IsModernProtocol(p)
}

// pinnedLegacy reports a protocol choice that rules out 2026-07-28.
func pinnedLegacy(p string) bool {
	return p == ProtocolLegacy || p != "" && p != ProtocolModern && !mcp.IsModernProtocol(p)
}

func toolsMayChange(caps mcp.ServerCapabilities) bool {
	return caps.Tools != nil && caps.Tools.ListChanged
}

func (d *dialer) newStreamable(listen bool) func(*session) (transport.Interface, error) {
	return func(*session) (transport.Interface, error) {
		opts := []transport.StreamableHTTPCOption{
			transport.WithHTTPHeaders(d.spec.Headers),
			transport.WithHTTPLogger(d.slog()),
		}
		if hc := d.httpClient(); hc != nil {
			opts = append(opts, transport.WithHTTPBasicClient(hc))
		}
		if listen {
			opts = append(opts, transport.WithContinuousListening())
		}
		return transport.NewStreamableHTTP(d.spec.URL, opts...)
	}
}

// httpClient is the HTTP client of an authorized server, nil for the
// transport's default.
func (d *dialer) httpClient() *http.Client {
	if d.spec.Auth == nil {
		return nil
	}
	return &http.Client{Transport: d.spec.Auth.Transport(http.DefaultTransport)}
}

func (d *dialer) newSSE(s *session) (transport.Interface, error) {
	opts := []transport.ClientOption{
		transport.WithHeaders(d.spec.Headers),
		transport.WithSSELogger(d.slog()),
		// Calls carry their own deadlines; the transport's default of 60 s
		// would cut long tool calls short.
		transport.WithResponseTimeout(24 * time.Hour),
	}
	if hc := d.httpClient(); hc != nil {
		opts = append(opts, transport.WithHTTPClient(hc))
	}
	t, err := transport.NewSSE(d.spec.URL, opts...)
	if err != nil {
		return nil, err
	}
	t.SetConnectionLostHandler(func(err error) {
		s.end(fmt.Errorf("SSE connection lost: %w", err))
	})
	return t, nil
}

func (d *dialer) dialHTTP(parent, ctx context.Context, newTransport func(*session) (transport.Interface, error), protocol string) (*session, error) {
	s := d.newSession(parent)
	inner, err := newTransport(s)
	if err != nil {
		s.cancel()
		return nil, err
	}
	tr := newTap(inner, d.log)
	s.tr = tr
	c, err := d.initialize(s, tr, ctx, protocol)
	if err != nil {
		s.close(d.stop, d.log())
		return nil, err
	}
	s.client = c
	if mcp.IsModernProtocol(s.info.Protocol) {
		// Closing a request's stream is the cancellation.
		if toolsMayChange(s.caps) {
			// 2026-07-28 delivers list changes on a subscription.
			_, err := c.ListenAsync(s.ctx, mcp.SubscriptionFilter{ToolsListChanged: true}, func(err error) {
				if s.err() == nil {
					d.log().Debug("subscriptions/listen ended", zap.Error(err))
				}
			})
			if err != nil {
				d.log().Warn("cannot subscribe to tool list changes", zap.Error(err))
			}
		}
	} else {
		tapOf(tr).cancelByNotification.Store(true)
	}
	return s, nil
}

// initialize creates a client on tr for the given protocol choice, starts
// it under the session's context and performs the handshake under ctx.
func (d *dialer) initialize(s *session, tr transport.Interface, ctx context.Context, protocol string) (*client.Client, error) {
	var opts []client.ClientOption
	if d.elicit != nil {
		opts = append(opts, client.WithElicitationHandler(elicitor{fn: d.elicit, server: d.spec.Name, log: d.log}))
	}
	t := tapOf(tr)
	t.elicit.Store(d.elicit != nil)
	t.modernOnly.Store(pinnedModern(protocol))
	switch protocol {
	case "":
		opts = append(opts, client.WithDiscoverTimeout(3*time.Second))
	case ProtocolLegacy:
		opts = append(opts, client.WithProtocolVersion(mcp.LATEST_LEGACY_PROTOCOL_VERSION))
	case ProtocolModern:
		opts = append(opts, client.WithProtocolVersion(mcp.LATEST_PROTOCOL_VERSION))
	default:
		opts = append(opts, client.WithProtocolVersion(protocol))
	}
	c := client.NewClient(tr, opts...)
	// The transport lives as long as the session, not as long as the start.
	if err := c.Start(s.ctx); err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	c.OnNotification(func(n mcp.JSONRPCNotification) { d.notify(s, n) })

	cctx, capt := withCapture(ctx)
	req := mcp.InitializeRequest{}
	req.Params.ClientInfo = clientInfo
	res, err := c.Initialize(cctx, req)
	if err != nil {
		if resp := capt.last(); resp != nil && resp.Error != nil {
			return nil, fmt.Errorf("initialize: %w", newRPCError(resp.Error))
		}
		return nil, fmt.Errorf("initialize: %w", err)
	}
	s.caps = c.GetServerCapabilities()
	s.info = ServerInfo{
		Name:         res.ServerInfo.Name,
		Title:        res.ServerInfo.Title,
		Version:      res.ServerInfo.Version,
		Instructions: res.Instructions,
		Protocol:     c.ProtocolVersion(),
	}
	return c, nil
}

// isRefusal reports an error that the server answered: a JSON-RPC error or
// a protocol version this client does not know.
func isRefusal(err error) bool {
	var rpc *RPCError
	var unsupported mcp.UnsupportedProtocolVersionError
	return errors.As(err, &rpc) || errors.As(err, &unsupported)
}

func (d *dialer) slog() *slog.Logger {
	h := zapslog.NewHandler(d.log().Core(), zapslog.WithName("mcp-go"),
		zapslog.AddStacktraceAt(slog.Level(127))) // no stack traces in logs
	return slog.New(h) // the core names the server
}
