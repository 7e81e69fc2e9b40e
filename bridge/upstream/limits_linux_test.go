package upstream

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

func TestUpstream_AServerThatRunsIntoALimitIsStoppedAndSaysWhich(t *testing.T) {
	hog := fixture.LimitHog(t)
	tests := []struct {
		mode    string
		command string
		args    []string
		limits  Limits
		want    string
	}{
		{"memory", hog, []string{"memory"}, Limits{Memory: 128 << 20}, "stopped by its memory limit (128 MiB)"},
		// A shell dies of SIGXCPU, as Python and Node do; 10^8 rounds
		// bound it if the limit does not.
		{"cpu", "/bin/sh", []string{"-c", "i=0; while [ $i -lt 100000000 ]; do i=$((i+1)); done"},
			Limits{CPU: time.Second}, "stopped by its cpu limit (1s)"},
		{"open_files", hog, []string{"open_files"}, Limits{OpenFiles: 64}, "stopped by its open_files limit (64)"},
		{"processes", hog, []string{"processes"}, Limits{Processes: 64}, "stopped by its processes limit (64)"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			command, args := tt.command, tt.args
			if tt.mode == "processes" && os.Geteuid() == 0 {
				// RLIMIT_NPROC does not bind root: run the hog as nobody,
				// whose processes are few, through setpriv, which passes
				// the limits on.
				setpriv, err := exec.LookPath("setpriv")
				if err != nil {
					t.Skip("RLIMIT_NPROC does not bind root, and setpriv is not here to run the hog as another user")
				}
				for _, dir := range []string{filepath.Dir(hog), filepath.Dir(filepath.Dir(hog))} {
					if err := os.Chmod(dir, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				// The limits are set on the shell, still root's, and pass
				// to setpriv and the hog: setting them on a process that
				// already changed its user needs CAP_SYS_RESOURCE, which a
				// sandbox's root may lack.
				command, args = "/bin/sh", append([]string{"-c", `sleep 0.3; exec "$@"`, "sh",
					setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", hog}, args...)
			}
			log, logs := testLogger(t)
			spec := Spec{Name: "hog", Transport: TransportStdio, Command: command, Args: args, Limits: &tt.limits}
			u := New(spec, Options{StartTimeout: waitLimit, MaxFailures: -1}, log)
			began := time.Now()
			u.Start()
			t.Cleanup(func() { _ = u.Close() })
			st := waitState(t, u, StateBackoff)
			if !strings.Contains(st.LastError, tt.want) {
				t.Errorf("last error %q, want it to say %q", st.LastError, tt.want)
			}
			failed := logs.FilterMessage("MCP server failed to start").All()
			if len(failed) == 0 || !strings.Contains(failed[0].ContextMap()["error"].(string), tt.want) {
				t.Errorf("the log: %+v; want the start failure saying %q", failed, tt.want)
			}
			t.Logf("stopped %s after the start", time.Since(began).Round(time.Millisecond))
			_ = u.Close()
			if left := fixture.Descendants(os.Getpid()); containsHog(left) {
				t.Errorf("processes left after close: %v", left)
			}
		})
	}
}

func containsHog(procs []string) bool {
	for _, p := range procs {
		if strings.Contains(p, "(hog)") {
			return true
		}
	}
	return false
}

func TestLimits_AreSetOnTheProcess(t *testing.T) {
	l := &Limits{Memory: 256 << 20, CPU: 1500 * time.Millisecond, OpenFiles: 100, Processes: 5000}
	spec := Spec{Name: "sleep", Transport: TransportStdio, Command: "/bin/sleep", Args: []string{"30"}, Limits: l}
	p, err := startProcess(spec, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	log, _ := testLogger(t)
	defer p.kill(defaultStopTimeouts, log)
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid()) + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Max data size             268435456            268435456            bytes",
		"Max cpu time              2                    7                    seconds",
		"Max open files            100                  100                  files",
		"Max processes             5000                 5000                 processes",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/proc/<pid>/limits has no line %q:\n%s", want, b)
		}
	}
}
