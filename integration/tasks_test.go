package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// taskLocation is the Location of a task of server-everything's research
// server, below the mount /tasks.
var taskLocation = regexp.MustCompile(`^/tasks/(research|short|peruser)/tasks/[0-9a-f]{32}$`)

// pollTask polls the task at location as user until it has ended, and
// returns the last answer; while it works, each answer must say so.
func pollTask(t *testing.T, location, user string) response {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		r := do(t, http.MethodGet, location, "", "X-User", user)
		if r.status != http.StatusAccepted {
			return r
		}
		var st struct{ ID, Status string }
		if err := json.Unmarshal(r.body, &st); err != nil || (st.Status != "working" && st.Status != "input_required") ||
			r.header.Get("Retry-After") == "" || !strings.HasSuffix(location, "/"+st.ID) {
			t.Fatalf("a working task's answer: %s %v (%v)", r, r.header, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s still works", location)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startResearch starts simulate-research-query of server as user with
// Prefer: respond-async and returns the task's Location.
func startResearch(t *testing.T, server, user, topic string) string {
	t.Helper()
	r := do(t, http.MethodPost, "/tasks/"+server+"/simulate-research-query", `{"topic":"`+topic+`"}`,
		"X-User", user, "Prefer", "respond-async")
	loc := r.header.Get("Location")
	if r.status != http.StatusAccepted || !taskLocation.MatchString(loc) || r.header.Get("Preference-Applied") != "respond-async" {
		t.Fatalf("start: %s %v", r, r.header)
	}
	return loc
}

// TestTasksOfServerEverything runs server-everything's task-only tool,
// simulate-research-query (four stages of a second each), over REST:
// started async, polled, cancelled, waited for, bound to its caller,
// expired.
func TestTasksOfServerEverything(t *testing.T) {
	script := everythingScript(t)
	site := func(title string) string {
		return fmt.Sprintf(`:%d {
	mcpo /tasks {
		title %q
		identity {http.request.header.X-User}
		server research {
			command node %s stdio
			task_ttl 3s
			elicitation decline
		}
		server short {
			command node %s stdio
			tool_timeout simulate-research-query 1s
		}
		server peruser {
			command node %s stdio
			isolation user
		}
	}
}
`, httpPort, title, script, script, script)
	}
	startCaddy(t, site("Tasks"))
	inputs := fixture.InputSchemas(fixture.Options{Captured: "everything"})
	for _, server := range []string{"research", "short"} {
		loadDoc(t, "tasks-everything-"+server, waitReady(t, "/tasks/"+server+"/openapi.json"), inputs)
	}
	// Both servers are ready: the mount's document covers them.
	doc := loadDoc(t, "tasks-everything", waitReady(t, "/tasks/openapi.json"), inputs)
	for _, server := range []string{"research", "short"} {
		item := doc.Paths.Find("/" + server + "/tasks/{id}")
		if item == nil || item.Get == nil || item.Delete == nil ||
			item.Get.OperationID != server+"_get_task" || item.Delete.OperationID != server+"_cancel_task" {
			t.Fatalf("the mount's document lacks the task operations of %s: %+v", server, item)
		}
	}

	t.Run("started async and polled until the result", func(t *testing.T) {
		loc := startResearch(t, "research", "alice", "tardigrades")
		r := pollTask(t, loc, "alice")
		var report string
		if r.status != http.StatusOK || json.Unmarshal(r.body, &report) != nil || !strings.Contains(report, "# Research Report: tardigrades") {
			t.Fatalf("the task's result: %s", r)
		}
		t.Run("another caller gets 404", func(t *testing.T) {
			for _, method := range []string{http.MethodGet, http.MethodDelete} {
				if r := do(t, method, loc, "", "X-User", "bob"); r.status != http.StatusNotFound {
					t.Errorf("%s as bob: %s", method, r)
				}
			}
			if r := do(t, http.MethodGet, loc, "", "X-User", "alice"); r.status != http.StatusOK {
				t.Errorf("alice's second poll: %s", r)
			}
		})
		t.Run("the outcome expires after task_ttl", func(t *testing.T) {
			deadline := time.Now().Add(waitLimit)
			for do(t, http.MethodGet, loc, "", "X-User", "alice").status != http.StatusNotFound {
				if time.Now().After(deadline) {
					t.Fatal("the outcome outlived task_ttl 3s")
				}
				time.Sleep(250 * time.Millisecond)
			}
		})
	})

	t.Run("a task that needs input gets it through tasks/result", func(t *testing.T) {
		// An ambiguous query asks the client to choose an interpretation
		// (input_required), which elicitation decline declines.
		r := do(t, http.MethodPost, "/tasks/research/simulate-research-query", `{"topic":"python","ambiguous":true}`,
			"X-User", "alice", "Prefer", "respond-async")
		if r.status != http.StatusAccepted {
			t.Fatalf("start: %s", r)
		}
		end := pollTask(t, r.header.Get("Location"), "alice")
		if end.status != http.StatusOK || !strings.Contains(string(end.body), "User declined - using default interpretation") {
			t.Errorf("the task's result: %s", end)
		}
	})

	t.Run("cancelled with DELETE", func(t *testing.T) {
		loc := startResearch(t, "research", "alice", "lichens")
		r := do(t, http.MethodDelete, loc, "", "X-User", "alice")
		var st struct{ Status string }
		if r.status != http.StatusOK || json.Unmarshal(r.body, &st) != nil || st.Status != "cancelled" {
			t.Fatalf("DELETE: %s", r)
		}
		if r := do(t, http.MethodGet, loc, "", "X-User", "alice"); r.status != http.StatusConflict {
			t.Errorf("GET of a cancelled task: %s", r)
		}
	})

	t.Run("a synchronous call waits for the task", func(t *testing.T) {
		r := do(t, http.MethodPost, "/tasks/research/simulate-research-query", `{"topic":"mosses"}`, "X-User", "alice")
		var report string
		if r.status != http.StatusOK || json.Unmarshal(r.body, &report) != nil || !strings.Contains(report, "# Research Report: mosses") {
			t.Fatalf("%s", r)
		}
	})

	t.Run("a synchronous call past its timeout gets 504 and the task to poll", func(t *testing.T) {
		r := do(t, http.MethodPost, "/tasks/short/simulate-research-query", `{"topic":"ferns"}`, "X-User", "carol")
		loc := r.header.Get("Location")
		if r.status != http.StatusGatewayTimeout || !taskLocation.MatchString(loc) || !strings.Contains(string(r.body), "poll GET "+loc) {
			t.Fatalf("%s %v", r, r.header)
		}
		if end := pollTask(t, loc, "carol"); end.status != http.StatusOK || !strings.Contains(string(end.body), "Research Report: ferns") {
			t.Errorf("the task after the timeout: %s", end)
		}
	})

	t.Run("a reload that keeps the server keeps its tasks", func(t *testing.T) {
		loc := startResearch(t, "research", "alice", "mycelium")
		startCaddy(t, site("Tasks, reloaded"))
		if r := pollTask(t, loc, "alice"); r.status != http.StatusOK || !strings.Contains(string(r.body), "Research Report: mycelium") {
			t.Errorf("the task after a reload: %s", r)
		}
		if r := do(t, http.MethodGet, loc, "", "X-User", "bob"); r.status != http.StatusNotFound {
			t.Errorf("bob after a reload: %s", r)
		}
	})

	t.Run("a task of a per-user server runs in its caller's session", func(t *testing.T) {
		waitReady(t, "/tasks/peruser/openapi.json")
		loc := startResearch(t, "peruser", "dave", "kelp")
		if r := pollTask(t, loc, "dave"); r.status != http.StatusOK || !strings.Contains(string(r.body), "Research Report: kelp") {
			t.Errorf("the task's result: %s", r)
		}
	})

	t.Run("prefer on a tool without tasks is ignored", func(t *testing.T) {
		r := do(t, http.MethodPost, "/tasks/research/echo", `{"message":"hi"}`, "X-User", "alice", "Prefer", "respond-async")
		if r.status != http.StatusOK || r.header.Get("Preference-Applied") != "" || !strings.Contains(string(r.body), "hi") {
			t.Errorf("%s %v", r, r.header)
		}
	})
}
