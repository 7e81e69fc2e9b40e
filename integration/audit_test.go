package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// The audit log is a logger of its own, http.handlers.mcpo.audit, which
// Caddy's log config sends to its own file: one line per call, saying who
// called what and how it ended, never the arguments or the result.
func TestAuditLog_OneLinePerCallInItsOwnFileWithoutArgumentsOrResults(t *testing.T) {
	dir := t.TempDir()
	mainLog, auditLog := filepath.Join(dir, "main.log"), filepath.Join(dir, "audit.log")
	// One option: globalOptions keeps one line per option name.
	startCaddyWith(t, []string{fmt.Sprintf("log default {\n\t\toutput file %s\n\t\tformat json\n\t\texclude http.handlers.mcpo.audit\n\t}\n\t"+
		"log audit {\n\t\toutput file %s\n\t\tformat json\n\t\tinclude http.handlers.mcpo.audit\n\t}", mainLog, auditLog)}, fmt.Sprintf(`:%d {
	mcpo /audit {
		%s
		identity {http.request.header.X-User}
	}
}
`, httpPort, testFixture(t, fixture.Options{})))
	waitReady(t, "/audit/openapi.json")

	const secret = "sk-audit-7f3a9c1e5b2d4086"
	calls := []struct {
		name, tool, body, user string
		status                 int
		outcome                string
	}{
		{"a success", "echo_args", `{"token":"` + secret + `"}`, "alice", http.StatusOK, "ok"},
		{"a tool error", "fail", `{"reason":"` + secret + `"}`, "bob", http.StatusInternalServerError, "tool_error"},
		{"refused arguments", "add", `{"a":"` + secret + `"}`, "alice", http.StatusUnprocessableEntity, "invalid_arguments"},
	}
	answers := make([]response, len(calls))
	for i, c := range calls {
		answers[i] = do(t, http.MethodPost, "/audit/"+c.tool, c.body, "X-User", c.user)
		if answers[i].status != c.status {
			t.Fatalf("%s: POST /audit/%s: %s, want status %d", c.name, c.tool, answers[i], c.status)
		}
	}
	if !bytes.Contains(answers[0].body, []byte(secret)) {
		t.Fatalf("echo_args answered %s, without the argument: the test proves nothing", answers[0])
	}

	var lines []map[string]any
	deadline := time.Now().Add(waitLimit)
	for len(lines) < len(calls) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		lines = readLogLines(t, auditLog)
	}
	if len(lines) != len(calls) {
		t.Fatalf("the audit log has %d lines, want %d: %v", len(lines), len(calls), lines)
	}
	for i, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			l := lines[i]
			want := map[string]any{
				"logger": "http.handlers.mcpo.audit", "level": "info", "msg": "tool call",
				"server": "audit", "tool": c.tool, "user": c.user, "outcome": c.outcome, "status": float64(c.status),
				"request_bytes": float64(len(c.body)), "response_bytes": float64(len(answers[i].body)),
			}
			for k, v := range want {
				if l[k] != v {
					t.Errorf("%s = %v, want %v (line %v)", k, l[k], v, l)
				}
			}
			if d, ok := l["duration"].(float64); !ok || d <= 0 || d > waitLimit.Seconds() {
				t.Errorf("duration = %v, want seconds above 0", l["duration"])
			}
			if _, ok := l["ts"].(float64); !ok {
				t.Errorf("ts = %v, want a time", l["ts"])
			}
		})
	}
	raw, err := os.ReadFile(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(secret)) {
		t.Errorf("the audit log holds an argument's value:\n%s", raw)
	}
	main, err := os.ReadFile(mainLog)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(main, []byte(`"MCP server ready"`)) {
		t.Errorf("the default log lacks the handler's own lines:\n%s", main)
	}
	if bytes.Contains(main, []byte(`"http.handlers.mcpo.audit"`)) {
		t.Errorf("the default log, which excludes the audit logger, has audit lines:\n%s", main)
	}
}

// readLogLines returns the JSON lines of a log file, none while it does
// not exist yet.
func readLogLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return out // a line being written
		}
		out = append(out, m)
	}
	return out
}
