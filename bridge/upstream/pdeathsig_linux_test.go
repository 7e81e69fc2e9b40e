package upstream

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
)

func init() { roles["caddy"] = serveCaddy }

// serveCaddy plays Caddy: it runs a server that ignores the end of its stdin
// and SIGTERM, writes the server's PID to stdout, and waits to be killed.
func serveCaddy() {
	u := New(roleSpec("stubborn", "stubborn"), Options{StartTimeout: waitLimit}, nil)
	u.Start()
	deadline := time.Now().Add(waitLimit)
	for u.Status().State != StateReady {
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "the server did not start:", u.Status().LastError)
			os.Exit(1)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Println(u.Status().PID)
	time.Sleep(2 * time.Minute) // until killed
}

func TestUpstream_AServerDoesNotOutliveCaddy(t *testing.T) {
	cmdPath, args, env := roleCommand("caddy")
	caddy := exec.Command(cmdPath, args...)
	caddy.Env = env
	caddy.Stderr = os.Stderr
	out, err := caddy.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = caddy.Process.Kill()
		_ = caddy.Wait()
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
	}()
	var pid int
	select {
	case s := <-line:
		if pid, err = strconv.Atoi(strings.TrimSpace(s)); err != nil || pid <= 0 {
			t.Fatalf("caddy said %q, want the server's PID", s)
		}
	case <-time.After(2 * waitLimit):
		t.Fatal("caddy did not say its server's PID")
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if !running(pid) {
		t.Fatalf("the server %d died while caddy ran", pid)
	}

	if err := caddy.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = caddy.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the server %d still runs 5 s after caddy was killed", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStartProcess_TheServerOutlivesTheThreadThatStartedIt(t *testing.T) {
	spec := Spec{Name: "sleep", Transport: TransportStdio, Command: "/bin/sleep", Args: []string{"30"}}
	p, err := startOnAThreadThatEnds(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop(StopTimeouts{Grace: 10 * time.Millisecond, Term: time.Second}, zap.NewNop())
	select {
	case <-p.exited:
		t.Fatalf("the server died with the thread that started it: %v", p.exitError())
	case <-time.After(500 * time.Millisecond):
	}
}

// startOnAThreadThatEnds starts spec from a goroutine that returns locked
// to its thread, which the runtime then ends, as it does for any goroutine
// of Caddy or of a plugin that returns so. The runtime never ends the main
// thread: a goroutine that finds itself there tries again.
func startOnAThreadThatEnds(spec Spec) (*process, error) {
	type started struct {
		p     *process
		err   error
		again bool
	}
	for {
		ch := make(chan started, 1)
		go func() {
			runtime.LockOSThread()
			if syscall.Gettid() == os.Getpid() {
				runtime.UnlockOSThread()
				ch <- started{again: true}
				return
			}
			p, err := startProcess(spec, func(string) {})
			ch <- started{p: p, err: err}
		}()
		if s := <-ch; !s.again {
			return s.p, s.err
		}
	}
}
