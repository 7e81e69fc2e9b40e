package upstream

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
)

// process is a stdio MCP server running in its own process group. Its
// stdin and stdout are pipes handed to the MCP transport; its stderr is read
// line by line into the log.
type process struct {
	cmd    *exec.Cmd
	stdin  *os.File // our end: writes go to the child's stdin
	stdout *os.File // our end: reads come from the child's stdout

	exited  chan struct{} // closed once the child has exited and been reaped
	waitErr error         // the child's exit status, set before exited closes
	drained chan struct{} // closed once stderr hit EOF

	tailMu sync.Mutex
	tail   []string // the last stderr lines, for error messages

	limits *Limits // nil for none
	// hit is the first limit stderr said the process ran into; "" for
	// none. Guarded by tailMu.
	hit string
}

// Bounds on the stderr lines kept for error messages.
const (
	tailLines   = 5
	tailLineLen = 300
)

// Bounds on one logged line of a child's stderr.
const maxStderrLine = 8 << 10

// startProcess starts spec's command with pipes for stdin, stdout and stderr.
// logLine receives each stderr line.
func startProcess(spec Spec, logLine func(line string)) (*process, error) {
	path, err := lookPath(spec.Command, spec.Env, spec.Dir)
	if err != nil {
		return nil, err
	}
	if spec.Dir != "" {
		if fi, err := os.Stat(spec.Dir); err != nil {
			return nil, fmt.Errorf("working directory: %w", err)
		} else if !fi.IsDir() {
			return nil, fmt.Errorf("working directory %q is not a directory", spec.Dir)
		}
	}

	cmd := &exec.Cmd{
		Path: path,
		Args: append([]string{spec.Command}, spec.Args...),
		Env:  spec.Env,
		Dir:  spec.Dir,
		// In its own process group, so that stopping it also stops what it
		// spawned (npx, uvx and shell wrappers leave the real server as a
		// grandchild).
		SysProcAttr: sysProcAttr(),
	}
	if cmd.Env == nil {
		cmd.Env = []string{} // never inherit Caddy's environment implicitly
	}

	var closers []*os.File
	closeAll := func() {
		for _, f := range closers {
			f.Close()
		}
	}
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			closers = append(closers, r, w)
		}
		return r, w, err
	}
	stdinR, stdinW, err := pipe()
	if err != nil {
		return nil, err
	}
	stdoutR, stdoutW, err := pipe()
	if err != nil {
		closeAll()
		return nil, err
	}
	stderrR, stderrW, err := pipe()
	if err != nil {
		closeAll()
		return nil, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, stdoutW, stderrW

	if err := startCmd(cmd); err != nil {
		closeAll()
		return nil, fmt.Errorf("starting %q: %w", spec.Command, err)
	}
	if err := applyLimits(cmd.Process.Pid, spec.Limits); err != nil {
		// Never run a server unbounded that should not be.
		signalGroup(cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		closeAll()
		return nil, fmt.Errorf("starting %q: %w", spec.Command, err)
	}
	// The child holds its own copies now.
	stdinR.Close()
	stdoutW.Close()
	stderrW.Close()

	p := &process{
		cmd:     cmd,
		stdin:   stdinW,
		stdout:  stdoutR,
		exited:  make(chan struct{}),
		drained: make(chan struct{}),
		limits:  spec.Limits,
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	go func() {
		defer close(p.drained)
		defer stderrR.Close()
		readLines(stderrR, func(line string) {
			p.remember(line)
			logLine(line)
		})
	}()
	return p, nil
}

func (p *process) remember(line string) {
	if len(line) > tailLineLen {
		line = line[:tailLineLen] + "…"
	}
	p.tailMu.Lock()
	defer p.tailMu.Unlock()
	if p.hit == "" && p.limits != nil {
		p.hit = p.limits.signOf(line)
	}
	if len(p.tail) == tailLines {
		p.tail = append(p.tail[:0], p.tail[1:]...)
	}
	p.tail = append(p.tail, line)
}

// exitedWithin waits up to d for the process to exit and its stderr to
// drain, and reports whether it exited.
func (p *process) exitedWithin(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	if !p.awaitExit(timer) {
		return false
	}
	select {
	case <-p.drained:
	case <-timer.C:
	}
	return true
}

// lastStderr returns the last lines the process wrote to stderr.
func (p *process) lastStderr() []string {
	p.tailMu.Lock()
	defer p.tailMu.Unlock()
	return slices.Clone(p.tail)
}

// ExitError reports a stdio server that exited while starting. Its message
// holds the exit status only: what the server wrote to stderr may hold
// anything, so it goes to the log, never into an HTTP response.
type ExitError struct {
	Err error
	// Stderr holds the last lines the server wrote to stderr.
	Stderr []string
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// pid returns the child's process ID, which is also its process group ID.
func (p *process) pid() int { return p.cmd.Process.Pid }

// exitError describes how the child ended, as a *LimitError when one of
// its limits stopped it; call it after exited is closed.
func (p *process) exitError() error {
	err := errors.New("process exited (exit status 0)")
	if p.waitErr != nil {
		err = fmt.Errorf("process exited (%w)", p.waitErr)
	}
	if p.limits == nil {
		return err
	}
	// What it wrote last may say which limit it ran into.
	t := time.NewTimer(200 * time.Millisecond)
	defer t.Stop()
	select {
	case <-p.drained:
	case <-t.C:
	}
	p.tailMu.Lock()
	said := p.hit
	p.tailMu.Unlock()
	if hit := p.limits.limitHit(err, p.waitErr, said); hit != nil {
		return hit
	}
	return err
}

// StopTimeouts bound the steps of stopping a stdio server.
type StopTimeouts struct {
	// Grace is how long the server may take to exit after its stdin is
	// closed, before it gets SIGTERM.
	Grace time.Duration
	// Term is how long it may take after SIGTERM, before SIGKILL.
	Term time.Duration
}

// defaultStopTimeouts are used where none are configured.
var defaultStopTimeouts = StopTimeouts{Grace: 2 * time.Second, Term: 3 * time.Second}

// How a server ended when it was stopped, as the log says.
const (
	stoppedAfterStdin = "exited after stdin closed"
	stoppedAfterTerm  = "exited after SIGTERM"
	stoppedByKill     = "killed with SIGKILL"
	stoppedNotGone    = "still running after SIGKILL"
	stoppedBefore     = "had exited"
	stoppedHTTP       = "disconnected"
	stoppedIdle       = "was not running"
)

// stop ends the process and everything in its process group: close stdin
// and wait, then SIGTERM to the group and wait, then SIGKILL to the group.
// It returns once the group is gone or SIGKILL has been sent and waited for,
// and says which step ended it. log should name the server.
func (p *process) stop(t StopTimeouts, log *zap.Logger) string {
	defer p.stdout.Close()
	p.stdin.Close()
	pgid := p.pid()
	if p.waitGroup(t.Grace) {
		return stoppedAfterStdin
	}
	log.Debug("stdio server still running after stdin closed; sending SIGTERM", zap.Int("pid", pgid))
	signalGroup(pgid, syscall.SIGTERM)
	if p.waitGroup(t.Term) {
		return stoppedAfterTerm
	}
	log.Warn("stdio server ignored SIGTERM; sending SIGKILL", zap.Int("pid", pgid))
	signalGroup(pgid, syscall.SIGKILL)
	if p.waitGroup(t.Term) {
		return stoppedByKill
	}
	return stoppedNotGone
}

// kill ends the process and everything in its process group with SIGKILL
// at once, for a server that stopped answering: a process stopped with
// SIGSTOP would hold SIGTERM pending, and a deadlocked one would take the
// whole grace. It says how the server ended.
func (p *process) kill(t StopTimeouts, log *zap.Logger) string {
	defer p.stdout.Close()
	p.stdin.Close()
	log.Warn("killing the stdio server's process group with SIGKILL", zap.Int("pid", p.pid()))
	signalGroup(p.pid(), syscall.SIGKILL)
	if p.waitGroup(t.Term) {
		return stoppedByKill
	}
	return stoppedNotGone
}

// waitGroup waits until the child has exited and no process is left in its
// group, or d has passed. It reports whether the group is gone.
func (p *process) waitGroup(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	if !p.awaitExit(timer) {
		return false
	}
	// The leader is gone; members it spawned may linger, holding pipes.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for groupAlive(p.pid()) {
		select {
		case <-tick.C:
		case <-timer.C:
			return false
		}
	}
	return true
}

// awaitExit waits for the process to exit until timer fires, and reports
// whether it exited.
func (p *process) awaitExit(timer *time.Timer) bool {
	select {
	case <-p.exited:
		return true
	case <-timer.C:
		return false
	}
}

// reapGroup stops what is left of the process group after the leader exited
// on its own, so a crashed wrapper does not leave its child behind.
func (p *process) reapGroup(t StopTimeouts) string {
	pgid := p.pid()
	defer p.stdout.Close()
	defer p.stdin.Close()
	if !groupAlive(pgid) {
		return stoppedBefore
	}
	signalGroup(pgid, syscall.SIGTERM)
	if !p.waitGroup(t.Term) {
		signalGroup(pgid, syscall.SIGKILL)
		p.waitGroup(t.Term)
	}
	return stoppedBefore
}

// readLines calls fn for each line of r, cutting lines longer than
// maxStderrLine and replacing invalid UTF-8, until r ends.
func readLines(r io.Reader, fn func(string)) {
	br := bufio.NewReaderSize(r, maxStderrLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			truncated := errors.Is(err, bufio.ErrBufferFull)
			s := strings.TrimRight(string(line), "\r\n")
			if !utf8.ValidString(s) {
				s = strings.ToValidUTF8(s, "\uFFFD")
			}
			if truncated {
				s += " …(truncated)"
			}
			if s != "" {
				fn(s)
			}
			if truncated {
				// Skip the rest of the overlong line.
				for errors.Is(err, bufio.ErrBufferFull) {
					_, err = br.ReadSlice('\n')
				}
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// lookPath finds command the way the child's own environment would: through
// the PATH in env, relative to dir for names with a slash.
func lookPath(command string, env []string, dir string) (string, error) {
	if strings.Contains(command, "/") {
		p := command
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		if err := executable(p); err != nil {
			return "", fmt.Errorf("command %q: %w", command, err)
		}
		return p, nil
	}
	pathEnv := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		if !filepath.IsAbs(d) && dir != "" {
			d = filepath.Join(dir, d)
		}
		p := filepath.Join(d, command)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("command %q not found in PATH %q: install it or give its full path", command, pathEnv)
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return errors.New("is a directory")
	}
	if fi.Mode()&0o111 == 0 {
		return errors.New("is not executable")
	}
	return nil
}
