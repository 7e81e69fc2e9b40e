package upstream

import (
	"context"
	"net/url"
	"path/filepath"

	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"
)

// rootsList answers a server's roots/list with the directories of
// Options.Roots.
type rootsList struct {
	dirs []string
	log  func() *zap.Logger
}

// ListRoots implements client.RootsHandler.
func (h rootsList) ListRoots(context.Context, mcp.ListRootsRequest) (*mcp.ListRootsResult, error) {
	res := &mcp.ListRootsResult{Roots: make([]mcp.Root, 0, len(h.dirs))}
	for _, d := range h.dirs {
		res.Roots = append(res.Roots, mcp.Root{URI: FileURI(d), Name: filepath.Base(d)})
	}
	h.log().Debug("roots listed", zap.Int("roots", len(res.Roots)))
	return res, nil
}

// FileURI is the file:// URI of an absolute path.
func FileURI(path string) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(filepath.Clean(path))}
	return u.String()
}
