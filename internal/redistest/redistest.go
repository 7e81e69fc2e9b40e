// Package redistest starts a real redis-server for tests, on a free
// loopback port, and stops it when the test ends.
//
// Where redis-server is not on PATH the test is skipped, loudly; with
// MCPO_REQUIRE_REDIS=1 (as make test sets once it has installed it) it
// fails instead.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is a running redis-server.
type Server struct {
	// Addr is its host:port on loopback.
	Addr string
	cmd  *exec.Cmd
}

// Start starts redis-server with nothing persisted, or skips (fails with
// MCPO_REQUIRE_REDIS=1) when there is none.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		msg := "redis-server is not installed: SKIPPING the tests of shared storage across Caddy instances " +
			"(install it with `apt-get install -y redis-server`, as make test does when run as root)"
		if os.Getenv("MCPO_REQUIRE_REDIS") != "" {
			t.Fatal(msg)
		}
		fmt.Fprintln(os.Stderr, "*** "+msg)
		t.Skip(msg)
	}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		s, err := start(t, bin, port)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("redis-server: %v", lastErr)
	return nil
}

func start(t testing.TB, bin string, port int) (*Server, error) {
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", "--protected-mode", "yes")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting redis-server: %w", err)
	}
	ready := make(chan bool, 1)
	var log strings.Builder
	go func() { // ends with redis-server's output
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if !sent {
				log.WriteString(line + "\n")
			}
			if !sent && strings.Contains(line, "Ready to accept connections") {
				ready <- true
				sent = true
			}
		}
		if !sent {
			ready <- false
		}
	}()
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd}
	select {
	case ok := <-ready:
		if !ok {
			_ = cmd.Wait()
			return nil, fmt.Errorf("redis-server on port %d exited:\n%s", port, log.String())
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("redis-server on port %d not ready after 10 s", port)
	}
	t.Cleanup(s.stop)
	return s, nil
}

// stop ends the server.
func (s *Server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
