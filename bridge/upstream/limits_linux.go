package upstream

import (
	"errors"
	"fmt"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func limitsSupported() error { return nil }

// killedByCPULimit reports a process the kernel ended for its CPU time
// limit: killed by SIGXCPU, or by SIGKILL once it used the limit (Go
// programs ignore SIGXCPU, and get SIGKILL at the hard limit).
func killedByCPULimit(waitErr error, limit time.Duration) bool {
	var ee *exec.ExitError
	if !errors.As(waitErr, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return false
	}
	return ws.Signal() == syscall.SIGXCPU || ws.Signal() == syscall.SIGKILL && ee.UserTime()+ee.SystemTime() >= limit
}

// applyLimits sets l on the running process pid with prlimit(2). It runs
// right after the process started, within microseconds of its exec: before
// a dynamic loader, let alone an interpreter, has done anything, so what
// the server starts inherits them. (Go's os/exec cannot set limits between
// fork and exec, and setting them on Caddy around the fork would bind
// Caddy too: rlimits are per process.)
func applyLimits(pid int, l *Limits) error {
	if l == nil {
		return nil
	}
	set := func(name string, resource int, soft, hard uint64) error {
		if err := unix.Prlimit(pid, resource, &unix.Rlimit{Cur: soft, Max: hard}, nil); err != nil {
			return fmt.Errorf("limits: setting %s: %w", name, err)
		}
		return nil
	}
	if l.Memory > 0 {
		if err := set("memory (RLIMIT_DATA)", unix.RLIMIT_DATA, uint64(l.Memory), uint64(l.Memory)); err != nil {
			return err
		}
	}
	if l.CPU > 0 {
		secs := uint64((l.CPU + 999_999_999) / 1_000_000_000)
		if err := set("cpu (RLIMIT_CPU)", unix.RLIMIT_CPU, secs, secs+cpuGrace); err != nil {
			return err
		}
	}
	if l.OpenFiles > 0 {
		if err := set("open_files (RLIMIT_NOFILE)", unix.RLIMIT_NOFILE, l.OpenFiles, l.OpenFiles); err != nil {
			return err
		}
	}
	if l.Processes > 0 {
		if err := set("processes (RLIMIT_NPROC)", unix.RLIMIT_NPROC, l.Processes, l.Processes); err != nil {
			return err
		}
	}
	return nil
}
