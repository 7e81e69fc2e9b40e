package bridge

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

// auditRecord is what the audit log says of one call: who called which
// tool, how it ended and how many bytes went each way; never the
// arguments or the result.
type auditRecord struct {
	face         Face
	server, tool string
	outcome      Outcome
	status       int
	took         time.Duration
	in, out      int64 // bytes of the request body as sent and of the answer's body
}

// auditFields holds the field slices of audit lines, *[]zap.Field.
var auditFields = sync.Pool{New: func() any {
	s := make([]zap.Field, 0, 11)
	return &s
}}

// audit writes the audit line of a call on log at INFO, with the
// caller's ID when ctx, the request's, carries an identity
// (IdentityFrom).
func audit(ctx context.Context, log *zap.Logger, rec auditRecord) {
	auditLine(ctx, log, rec, "tool call", zap.String("tool", rec.tool))
}

// auditLine writes an audit line with msg and what (the field naming what
// was asked for).
func auditLine(ctx context.Context, log *zap.Logger, rec auditRecord, msg string, what zap.Field) {
	ce := log.Check(zap.InfoLevel, msg)
	if ce == nil {
		return
	}
	// The fields are written by the time Write returns: their slice is
	// used again, rather than allocated for every call.
	buf := auditFields.Get().(*[]zap.Field)
	defer func() {
		clear(*buf)
		auditFields.Put(buf)
	}()
	fields := append((*buf)[:0], zap.String("server", rec.server), what)
	if rec.face != "" {
		fields = append(fields, zap.String("face", string(rec.face)))
	}
	if id, ok := IdentityFrom(ctx); ok && id.ID != "" {
		fields = append(fields, zap.String("user", id.ID))
	}
	if sc := spanContext(ctx); sc.IsValid() {
		fields = append(fields, zap.String("trace_id", sc.TraceID().String()))
	}
	fields = append(fields, zap.String("outcome", string(rec.outcome)), zap.Int("status", rec.status),
		zap.Duration("duration", rec.took), zap.Int64("request_bytes", rec.in), zap.Int64("response_bytes", rec.out))
	ce.Write(fields...)
}

// countingBody counts the bytes read from a request body.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}

// countingWriter counts the bytes of an answer's body.
type countingWriter struct {
	http.ResponseWriter
	n      int64
	status int // the status written; 0 before it is
}

func (c *countingWriter) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// Unwrap gives http.ResponseController the writer underneath.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
