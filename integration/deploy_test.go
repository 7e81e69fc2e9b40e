package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"gopkg.in/yaml.v3"

	"github.com/caddy-mcpo/caddy-mcpo/internal/identity/jwttest"
)

// The container image (Dockerfile, deploy/) cannot be built here: no
// container engine runs on the machines the tests run on. So its build steps
// are scripts in deploy/ that the Dockerfile runs, and these tests check the
// rest: that the Dockerfile and the compose file agree with the build, and
// that the image's configuration, run with Caddy as deploy/build-caddy.sh
// builds it and uv as deploy/install-uv.sh installs it, serves Open WebUI as
// an unprivileged user.

// repoFile reads a file of the repository.
func repoFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// makeVar returns the value of an assignment `name := value` in the
// Makefile.
func makeVar(t *testing.T, makefile, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `\s*:?=\s*(\S+)\s*$`).FindStringSubmatch(makefile)
	if m == nil {
		t.Fatalf("the Makefile sets no %s", name)
	}
	return m[1]
}

// dockerfile is what the tests read of a Dockerfile: its global ARG
// defaults and its stages.
type dockerfile struct {
	args   map[string]string
	stages []dockerStage
}

type dockerStage struct {
	from         string
	instructions []string // each with its continuation lines joined
}

func parseDockerfile(text string) dockerfile {
	df := dockerfile{args: map[string]string{}}
	var lines []string
	cur := ""
	for _, l := range strings.Split(text, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "#") || (t == "" && cur == "") {
			continue
		}
		cur += " " + strings.TrimSuffix(t, "\\")
		if !strings.HasSuffix(t, "\\") {
			lines = append(lines, strings.TrimSpace(cur))
			cur = ""
		}
	}
	for _, l := range lines {
		word, rest, _ := strings.Cut(l, " ")
		switch strings.ToUpper(word) {
		case "FROM":
			df.stages = append(df.stages, dockerStage{from: rest})
		case "ARG":
			if len(df.stages) == 0 {
				k, v, _ := strings.Cut(rest, "=")
				df.args[k] = v
			}
			fallthrough
		default:
			if n := len(df.stages); n > 0 {
				df.stages[n-1].instructions = append(df.stages[n-1].instructions, l)
			}
		}
	}
	return df
}

// has says whether the stage has an instruction starting with prefix.
func (s dockerStage) has(prefix string) bool {
	for _, in := range s.instructions {
		if strings.HasPrefix(in, prefix) {
			return true
		}
	}
	return false
}

// user is the stage's last USER, "" for none.
func (s dockerStage) user() string {
	u := ""
	for _, in := range s.instructions {
		if rest, ok := strings.CutPrefix(in, "USER "); ok {
			u = strings.TrimSpace(rest)
		}
	}
	return u
}

func TestDockerfile_BuildsWithTheVersionsTheRepositoryPins(t *testing.T) {
	df := parseDockerfile(repoFile(t, "Dockerfile"))
	makefile := repoFile(t, "Makefile")
	gomod := repoFile(t, "go.mod")

	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)
	if goLine == nil {
		t.Fatal("go.mod has no go line")
	}
	for _, c := range []struct{ arg, want string }{
		{"GO_VERSION", goLine[1]},
		{"XCADDY_VERSION", makeVar(t, makefile, "XCADDY_VERSION")},
		{"UV_VERSION", makeVar(t, makefile, "UV_VERSION")},
		{"NODE_VERSION", "22"},
	} {
		if got := df.args[c.arg]; got != c.want {
			t.Errorf("the Dockerfile's %s is %q; the repository pins %q", c.arg, got, c.want)
		}
	}
	if len(df.stages) < 2 {
		t.Fatalf("the Dockerfile has %d stages; it builds in one and runs in another", len(df.stages))
	}
	build, run := df.stages[0], df.stages[len(df.stages)-1]
	if !build.has("RUN XCADDY=/go/bin/xcaddy deploy/build-caddy.sh ") {
		t.Error("the build stage does not build Caddy with deploy/build-caddy.sh, the script make xcaddy runs")
	}
	if !run.has("RUN /usr/local/lib/caddy-mcpo/install-uv.sh ") {
		t.Error("the runtime stage does not install uv with deploy/install-uv.sh")
	}
	if !strings.HasPrefix(run.from, "node:${NODE_VERSION}") {
		t.Errorf("the runtime stage starts from %q, not Node (for npx)", run.from)
	}
	if !run.has("COPY deploy/Caddyfile /etc/caddy/Caddyfile") {
		t.Error("the runtime stage does not copy deploy/Caddyfile, the configuration the tests run")
	}
	if u := run.user(); u == "" || strings.HasPrefix(u, "root") || strings.HasPrefix(u, "0") {
		t.Errorf("the image runs as %q; it must run as a user without privileges", u)
	}
}

func TestCompose_WiresOpenWebUIToTheImagesMount(t *testing.T) {
	var compose struct {
		Services map[string]struct {
			Build       map[string]string `yaml:"build"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal([]byte(repoFile(t, "deploy/compose.yaml")), &compose); err != nil {
		t.Fatalf("deploy/compose.yaml: %v", err)
	}
	mcpo, owui := compose.Services["caddy-mcpo"], compose.Services["open-webui"]
	if mcpo.Build["context"] != ".." || mcpo.Build["dockerfile"] != "Dockerfile" {
		t.Errorf("caddy-mcpo is not built from the repository's Dockerfile: %v", mcpo.Build)
	}
	if owui.Environment["ENABLE_FORWARD_USER_INFO_HEADERS"] != "true" ||
		owui.Environment["FORWARD_USER_INFO_HEADER_JWT_SECRET"] != "${OWUI_JWT_SECRET}" ||
		!strings.HasPrefix(mcpo.Environment["OWUI_JWT_SECRET"], "${OWUI_JWT_SECRET") {
		t.Errorf("Open WebUI does not sign its users' tokens with the secret caddy-mcpo verifies them with: %v / %v", owui.Environment, mcpo.Environment)
	}
	var conns []struct {
		Type, URL, Path, Key string
		AuthType             string `json:"auth_type"`
	}
	raw := owui.Environment["TOOL_SERVER_CONNECTIONS"]
	if err := json.Unmarshal([]byte(raw), &conns); err != nil || len(conns) != 1 {
		t.Fatalf("TOOL_SERVER_CONNECTIONS is not a list of one connection: %v: %s", err, raw)
	}
	c := conns[0]
	caddyfile := repoFile(t, "deploy/Caddyfile")
	mount := regexp.MustCompile(`(?m)^\s*mcpo (/\S*) \{`).FindStringSubmatch(caddyfile)
	if mount == nil {
		t.Fatal("deploy/Caddyfile has no mcpo block")
	}
	if c.Type != "openapi" || c.URL != "http://caddy-mcpo:8080"+mount[1] || c.Path != "openapi.json" ||
		c.AuthType != "bearer" || c.Key != "${MCPO_API_KEY}" {
		t.Errorf("Open WebUI's connection %+v does not reach the mount %s with the key caddy-mcpo checks", c, mount[1])
	}
	for _, want := range []string{"api_key {env.MCPO_API_KEY}", "identity openwebui_jwt {env.OWUI_JWT_SECRET}", ":{$MCPO_PORT:8080}"} {
		if !strings.Contains(caddyfile, want) {
			t.Errorf("deploy/Caddyfile lacks %q", want)
		}
	}
}

// TestDeploy_TheImagesConfigurationServesOpenWebUIsUsersUnprivileged runs
// what the image runs, outside a container: Caddy built by
// deploy/build-caddy.sh (make xcaddy passes it in MCPO_DEPLOY_CADDY), uv
// installed by deploy/install-uv.sh, deploy/Caddyfile, as the user nobody
// when the test runs as root, with a home of its own as the image's user
// has.
func TestDeploy_TheImagesConfigurationServesOpenWebUIsUsersUnprivileged(t *testing.T) {
	bin := os.Getenv("MCPO_DEPLOY_CADDY")
	if bin == "" {
		t.Skip("MCPO_DEPLOY_CADDY is not set: `make xcaddy` (part of `make test`) builds Caddy with deploy/build-caddy.sh and runs this test with it")
	}
	dir := t.TempDir()
	uvDir, home := filepath.Join(dir, "uv"), filepath.Join(dir, "home")
	install := exec.Command("../deploy/install-uv.sh", uvDir, makeVar(t, repoFile(t, "Makefile"), "UV_VERSION"))
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("deploy/install-uv.sh: %v\n%s", err, out)
	}
	caddyBin, caddyfile := filepath.Join(dir, "caddy"), filepath.Join(dir, "Caddyfile")
	copyFile(t, bin, caddyBin, 0o755)
	copyFile(t, "../deploy/Caddyfile", caddyfile, 0o644)
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}

	port, admin := freePort(), freePort()
	const apiKey, secret = "deploy-test-key", "a-secret-of-at-least-32-bytes-for-hs256"
	cmd := exec.Command(caddyBin, "run", "--config", caddyfile, "--adapter", "caddyfile")
	cmd.Dir = home
	cmd.Env = []string{
		"PATH=" + filepath.Join(uvDir, "bin") + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + home,
		"XDG_DATA_HOME=" + filepath.Join(home, "data"),
		"XDG_CONFIG_HOME=" + filepath.Join(home, "config"),
		"MCPO_PORT=" + strconv.Itoa(port),
		"CADDY_ADMIN=127.0.0.1:" + strconv.Itoa(admin),
		"MCPO_API_KEY=" + apiKey,
		"OWUI_JWT_SECRET=" + secret,
	}
	// What a container gets from its host where a proxy or a private CA
	// stands between it and the package indexes.
	for _, name := range []string{
		"SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE",
		"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
		"UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_NATIVE_TLS",
	} {
		if v, ok := os.LookupEnv(name); ok {
			cmd.Env = append(cmd.Env, name+"="+v)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if os.Geteuid() == 0 {
		// As the image's user: nobody, owning only its home.
		const nobody = 65534
		for _, d := range []string{filepath.Dir(dir), dir} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chown(home, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: nobody, Gid: nobody}
	}
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})

	url := fmt.Sprintf("http://127.0.0.1:%d/time", port)
	// The first start fetches mcp-server-time with uvx.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r, err := sendURL(context.Background(), http.MethodGet, url+"/openapi.json", "")
		if err == nil && r.status == http.StatusOK {
			if !strings.Contains(string(r.body), `"/get_current_time"`) {
				t.Fatalf("the document has no get_current_time: %s", r.body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the time server is not ready after 2m: %v %v\n%s", r, err, logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st := procStatus(t, cmd.Process.Pid, "Uid"); os.Geteuid() == 0 && strings.Fields(st)[0] != "65534" {
		t.Errorf("Caddy runs as uid %s, not nobody", st)
	}

	token := jwttest.Sign(t, jose.HS256, []byte(secret), map[string]any{
		"iss": "open-webui", "sub": "user-1", "email": "ada@example.com", "name": "Ada", "role": "user",
		"iat": time.Now().Unix(), "exp": time.Now().Add(5 * time.Minute).Unix(),
	})
	call := func(header ...string) response {
		t.Helper()
		r, err := sendURL(context.Background(), http.MethodPost, url+"/get_current_time", `{"timezone":"UTC"}`, header...)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, c := range []struct {
		name   string
		header []string
		status int
		want   string
	}{
		{"a call with the key and a user's token", []string{"Authorization", "Bearer " + apiKey, "X-OpenWebUI-User-Jwt", token}, 200, `"timezone":"UTC"`},
		{"a call without a user's token", []string{"Authorization", "Bearer " + apiKey}, 401, "X-OpenWebUI-User-Jwt"},
		{"a call without the key", []string{"X-OpenWebUI-User-Jwt", token}, 401, "API key"},
	} {
		r := call(c.header...)
		if r.status != c.status || !strings.Contains(string(r.body), c.want) {
			t.Errorf("%s: %s, want %d with %q", c.name, r, c.status, c.want)
		}
	}

	// Stopped as docker stop stops it, Caddy stops the server too.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		exited <- nil
	case <-time.After(30 * time.Second):
		t.Fatalf("Caddy did not stop within 30s of SIGTERM\n%s", logs)
	}
	if strings.Contains(logs.String(), secret) || strings.Contains(logs.String(), apiKey) {
		t.Error("Caddy's log holds a secret")
	}
}

// copyFile copies a file, with mode.
func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// procStatus returns a field of /proc/<pid>/status.
func procStatus(t *testing.T, pid int, field string) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return ""
}

// lockedBuffer collects a process's output, written and read from
// different goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
