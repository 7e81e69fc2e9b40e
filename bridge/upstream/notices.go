package upstream

import "github.com/mark3labs/mcp-go/mcp"

// Notice is a notification of the server that a client of the bridge may
// be told of: that its resources or prompts changed
// (notifications/resources/list_changed, notifications/prompts/list_changed),
// that a resource was updated (notifications/resources/updated), or a log
// message (notifications/message). Params are as the server sent them.
type Notice struct {
	Method string
	Params map[string]any
}

// noticeMethods are the notifications passed on to Listen's functions.
var noticeMethods = map[string]bool{
	string(mcp.MethodNotificationResourcesListChanged): true,
	string(mcp.MethodNotificationPromptsListChanged):   true,
	string(mcp.MethodNotificationResourceUpdated):      true,
	string(mcp.MethodNotificationMessage):              true,
}

// Listen calls f with every Notice the server sends from now on, of
// whichever of its sessions, until stop is called. f runs on the
// transport's reader: it must neither block nor call the server.
func (u *Upstream) Listen(f func(Notice)) (stop func()) {
	return u.listeners.Add(f)
}

// tell passes n to the functions Listen registered, when it is a Notice.
func (u *Upstream) tell(n mcp.JSONRPCNotification) {
	if !noticeMethods[n.Method] {
		return
	}
	for _, f := range u.listeners.All() {
		f(Notice{Method: n.Method, Params: n.Params.AdditionalFields})
	}
}
