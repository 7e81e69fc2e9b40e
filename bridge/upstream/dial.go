package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
)

// dialer connects sessions for one Upstream.
type dialer struct {
	spec   Spec
	log    func() *zap.Logger // names the server
	stop   StopTimeouts
	elicit ElicitFunc // nil: no elicitation capability
	roots  []string   // nil: no roots capability
	// sampling declares the sampling capability (Options.Sampling).
	sampling bool
	notify   func(s *session, n mcp.JSONRPCNotification)
	// sole finds the call a request the server sent on its own is for
	// (Upstream.soleCaller); nil for none.
	sole func(s *session, meta *mcp.Meta) (context.Context, string)
	// maxMessage bounds one message from the server; 0 for the default.
	maxMessage int64
	// seen, if set, is called whenever the server sends something.
	seen func()
	// lastStop says how the server of the last session the dialer closed
	// ended, for a Close that interrupts a start.
	lastStop string
}

// closeSession closes a session and remembers how its server ended.
func (d *dialer) closeSession(s *session) {
	d.lastStop = s.close(d.stop, d.log())
}

// dial starts a session and initializes it. ctx bounds the start; the
// session lives under parent until it is closed.
func (d *dialer) dial(ctx, parent context.Context) (*session, error) {
	switch d.spec.Transport {
	case TransportStdio:
		return d.dialStdio(ctx, parent)
	case TransportStreamableHTTP:
		return d.dialStreamable(ctx, parent)
	case TransportSSE:
		protocol := d.spec.Protocol
		if protocol == "" {
			protocol = ProtocolLegacy // HTTP+SSE is a legacy transport
		}
		return d.dialHTTP(ctx, parent, d.newSSE, protocol)
	case TransportAuto:
		s, err := d.dialStreamable(ctx, parent)
		if err == nil || !errors.Is(err, transport.ErrLegacySSEServer) {
			return s, err
		}
		d.log().Info("endpoint refused Streamable HTTP; trying HTTP+SSE",
			zap.String("url", d.spec.Endpoint()))
		s, sseErr := d.dialHTTP(ctx, parent, d.newSSE, ProtocolLegacy)
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
		ctx:     ctx,
		cancel:  cancel,
		done:    make(chan struct{}),
		relist:  make(chan struct{}, 1),
		recheck: make(chan struct{}, 1),
	}
}

func (d *dialer) dialStdio(ctx, parent context.Context) (*session, error) {
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
	out := d.stdout(s, proc.stdout, proc.stdout)
	s.junk = out.junk
	s.tr = transport.NewIO(out, proc.stdin, nil)
	go func() {
		select {
		case <-proc.exited:
			s.end(proc.exitError())
		case <-s.ctx.Done():
		}
	}()

	protocol := d.spec.Protocol
	if protocol == "" {
		protocol = ProtocolLegacy // see ProtocolAuto
	}
	err = d.initialize(ctx, s, protocol)
	if err != nil && d.spec.Protocol == "" && isRefusal(err) {
		// The server answered the handshake with an error: it may speak only
		// the stateless 2026-07-28 protocol.
		err = d.initialize(ctx, s, ProtocolModern)
	}
	if err == nil {
		return s, nil
	}
	// A server that dies at start says why on stderr.
	exited := proc.exitedWithin(500 * time.Millisecond)
	d.closeSession(s)
	if exited {
		return nil, &ExitError{
			Err:    fmt.Errorf("%w: the server %v", err, proc.exitError()),
			Stderr: proc.lastStderr(),
		}
	}
	return nil, err
}

// stdout returns what mcp-go reads a stdio server's output r through (see
// stdoutReader); pipe, if set, is closed when the server sends a message
// over the limit.
func (d *dialer) stdout(s *session, r io.Reader, pipe io.Closer) *stdoutReader {
	return &stdoutReader{
		r: r, pipe: pipe, server: d.spec.Name, limit: d.messageLimit(), seen: d.sawMessage,
		tooLarge: func(e *MessageTooLargeError) { s.end(e) },
		junk:     newJunkLog(d.log),
	}
}

// messageLimit is the largest message the server may send, in bytes.
func (d *dialer) messageLimit() int64 {
	if d.maxMessage <= 0 {
		return defaultMaxMessageBytes
	}
	return d.maxMessage
}

// sawMessage notes that the server sent something.
func (d *dialer) sawMessage() {
	if d.seen != nil {
		d.seen()
	}
}

// dialStreamable connects over Streamable HTTP. A legacy server that says
// its tools may change only sends tools/list_changed on a standing GET
// stream, and may send its own requests (elicitation, sampling) there too,
// which wait for a stream that never comes when there is none; mcp-go opens
// that stream only when told before the handshake: such a server is
// dialled again, on the version it negotiated, with the stream.
func (d *dialer) dialStreamable(ctx, parent context.Context) (*session, error) {
	listen := pinnedLegacy(d.spec.Protocol)
	s, err := d.dialHTTP(ctx, parent, d.newStreamable(listen), d.spec.Protocol)
	if err != nil || listen || mcp.IsModernProtocol(s.info.Protocol) || (!toolsMayChange(s.caps) && d.elicit == nil && !d.sampling) {
		return s, err
	}
	version := s.info.Protocol
	d.closeSession(s)
	return d.dialHTTP(ctx, parent, d.newStreamable(true), version)
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

// listChanges are the list changes a 2026-07-28 session subscribes to:
// those the server says it announces. Tool changes relist the tools;
// the others reach Listen's functions (an MCP endpoint's clients).
func listChanges(caps mcp.ServerCapabilities) mcp.SubscriptionFilter {
	return mcp.SubscriptionFilter{
		ToolsListChanged:     toolsMayChange(caps),
		PromptsListChanged:   caps.Prompts != nil && caps.Prompts.ListChanged,
		ResourcesListChanged: caps.Resources != nil && caps.Resources.ListChanged,
	}
}

// newStreamable returns a constructor of Streamable HTTP transports; listen
// opens the standing GET stream of legacy connections.
func (d *dialer) newStreamable(listen bool) func(*session) (transport.Interface, error) {
	return func(s *session) (transport.Interface, error) {
		opts := []transport.StreamableHTTPCOption{
			transport.WithHTTPHeaders(d.spec.Headers),
			transport.WithHTTPLogger(d.slog(s)),
			transport.WithHTTPBasicClient(d.httpClient()),
		}
		if listen {
			// mcp-go deprecates the option because 2026-07-28 has no GET
			// stream; its replacement there, subscriptions/listen
			// (Client.ListenAsync), is what dialHTTP uses on such
			// connections. Legacy connections have no other way to the
			// stream, and the option pins them to the legacy era, which
			// the caller has chosen already.
			opts = append(opts, transport.WithContinuousListening())
		}
		return transport.NewStreamableHTTP(d.spec.URL, opts...)
	}
}

// httpClient is the HTTP client of a server reached over HTTP: each
// request carries the headers of the call that makes it (WithCallHeaders),
// then the Authorizer's credentials, if any; each message of a response is
// bounded by the message size limit (limitTransport).
func (d *dialer) httpClient() *http.Client {
	var rt http.RoundTripper = http.DefaultTransport
	if d.spec.Auth != nil {
		rt = d.spec.Auth.Transport(rt)
	}
	origin, _ := url.Parse(d.spec.URL) // Spec.Validate parsed it; nil adds no call headers
	rt = &callHeaderTransport{base: rt, origin: origin}
	return &http.Client{Transport: &limitTransport{base: rt, server: d.spec.Name, limit: d.messageLimit(), log: d.log}}
}

func (d *dialer) newSSE(s *session) (transport.Interface, error) {
	opts := []transport.ClientOption{
		transport.WithHeaders(d.spec.Headers),
		transport.WithSSELogger(d.slog(s)),
		// Calls carry their own deadlines; the transport's default of 60 s
		// would cut long tool calls short.
		transport.WithResponseTimeout(24 * time.Hour),
		transport.WithHTTPClient(d.httpClient()),
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

// dialHTTP starts a session on the transport newTransport makes and
// initializes it for the given protocol choice.
func (d *dialer) dialHTTP(ctx, parent context.Context, newTransport func(*session) (transport.Interface, error), protocol string) (*session, error) {
	s := d.newSession(parent)
	tr, err := newTransport(s)
	if err != nil {
		s.cancel()
		return nil, err
	}
	s.tr = tr
	if err := d.initialize(ctx, s, protocol); err != nil {
		d.closeSession(s)
		return nil, err
	}
	if changes := listChanges(s.caps); mcp.IsModernProtocol(s.info.Protocol) && !changes.IsEmpty() {
		// 2026-07-28 delivers list changes on a subscription.
		s.listenMu.Lock()
		err := s.listen(changes, d.log)
		s.listenMu.Unlock()
		if err != nil {
			d.log().Warn("cannot subscribe to list changes", zap.Error(err))
		}
	}
	return s, nil
}

// listen opens the session's subscriptions/listen stream (2026-07-28)
// with filter, in the background until the session ends or a stream
// opened after it replaces it. The caller holds listenMu.
func (s *session) listen(filter mcp.SubscriptionFilter, log func() *zap.Logger) error {
	_, err := s.client.ListenAsync(s.ctx, filter, func(err error) {
		if s.err() == nil {
			log().Debug("subscriptions/listen ended", zap.Error(err))
		}
	})
	return err
}

// clientInfo is how caddy-mcpo introduces itself to servers.
var clientInfo = mcp.Implementation{Name: "caddy-mcpo", Version: "0.1.0"}

// initialize creates a client for the given protocol choice on a tap of
// the session's transport, starts it under the session's context and
// performs the handshake under ctx. On success the session has its client,
// capabilities and ServerInfo.
func (d *dialer) initialize(ctx context.Context, s *session, protocol string) error {
	log := s.gatedLog(d.log) // for what mcp-go's goroutines run
	t := &tap{inner: s.tr, log: log, modernOnly: pinnedModern(protocol), applyDefaults: d.elicit != nil}
	if _, stdio := s.tr.(*transport.Stdio); !stdio {
		t.seen = d.sawMessage // stdio's are seen as stdoutReader reads them
	}
	var opts []client.ClientOption
	var sole func(meta *mcp.Meta) (context.Context, string)
	if d.sole != nil {
		sole = func(meta *mcp.Meta) (context.Context, string) { return d.sole(s, meta) }
	}
	if d.elicit != nil {
		s.answers.elicit = &elicitor{fn: d.elicit, name: d.spec.Name, log: log, sole: sole}
		opts = append(opts, client.WithElicitationHandler(s.answers.elicit))
	}
	if d.sampling {
		s.answers.sample = &sampler{log: log, sole: sole}
		opts = append(opts, client.WithSamplingHandler(s.answers.sample))
	}
	if len(d.roots) > 0 {
		s.answers.roots = &rootsList{dirs: d.roots, log: log}
		opts = append(opts, client.WithRootsHandler(s.answers.roots))
	}
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
	c := client.NewClient(t.forClient(), opts...)
	// The transport lives as long as the session, not as long as the start.
	if err := c.Start(s.ctx); err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		s.callbacks.pass(func() { d.notify(s, n) })
	})

	req := mcp.InitializeRequest{}
	req.Params.ClientInfo = clientInfo
	res, err := c.Initialize(ctx, req)
	if err != nil {
		if rpc := t.handshakeRefusal(); rpc != nil {
			return fmt.Errorf("initialize: %w", rpc)
		}
		return fmt.Errorf("initialize: %w", err)
	}
	s.client = c
	s.caps = c.GetServerCapabilities()
	s.info = ServerInfo{
		Name:         res.ServerInfo.Name,
		Title:        res.ServerInfo.Title,
		Version:      res.ServerInfo.Version,
		Instructions: res.Instructions,
		Protocol:     c.ProtocolVersion(),
		Resources:    s.caps.Resources != nil,
		Subscribe:    s.caps.Resources != nil && s.caps.Resources.Subscribe,
		Prompts:      s.caps.Prompts != nil,
		Completions:  s.caps.Completions != nil,
	}
	return nil
}

// isRefusal reports an error that the server answered: a JSON-RPC error or
// a protocol version this client does not know.
func isRefusal(err error) bool {
	var rpc *RPCError
	var unsupported mcp.UnsupportedProtocolVersionError
	return errors.As(err, &rpc) || errors.As(err, &unsupported)
}

// slog returns mcp-go's logger for the transport of s, which logs until
// s is closed.
func (d *dialer) slog(s *session) *slog.Logger {
	h := zapslog.NewHandler(d.log().Core(), zapslog.WithName("mcp-go"),
		zapslog.AddStacktraceAt(slog.Level(127))) // no stack traces in logs
	return slog.New(gatedHandler{h, &s.callbacks}) // the core names the server
}
