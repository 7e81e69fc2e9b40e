package bridge

import "context"

// Identity is who is calling, as the handler in front of the bridge
// established it for one request (from a verified token, an API key
// naming its user, or a placeholder an authentication handler set). The
// zero value is an anonymous caller.
type Identity struct {
	// ID names the caller: what per-caller sessions and rules key on.
	ID string
	// Email, Name and Role describe the caller when the source says so.
	Email string
	Name  string
	Role  string
	// Groups the caller belongs to, when the source says so.
	Groups []string
}

type identityKey struct{}

// WithIdentity returns ctx carrying the caller's identity. The bridge
// passes the request's context down to Caller.CallTool, so a Caller sees
// who is calling.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity ctx carries, and whether it carries
// one.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}
