package upstream

import (
	"bytes"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
)

// sysProcAttr puts the server in its own process group, and has the kernel
// kill it when Caddy dies without stopping it (SIGKILL, the OOM killer).
// Its stdin then reaches end of file, which is the polite way to end it,
// but a server may ignore that, and nobody is left to send SIGTERM and,
// later, SIGKILL: so the signal is SIGKILL. Only the server gets it, not
// what it started: those (the real server behind npx or uvx) see their
// stdin close, and one that ignores that, or that left the process group
// with setsid, outlives Caddy.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// starter starts the servers' processes, from one OS thread that lives as
// long as Caddy.
//
// The kernel sends the parent-death signal when the thread that forked the
// child ends, not the process (prctl(2) PR_SET_PDEATHSIG; golang/go#27505).
// The Go runtime ends a thread only when a goroutine locked to it with
// runtime.LockOSThread returns without unlocking it: it keeps idle threads
// for reuse. But any goroutine of Caddy or of a plugin that does so on the
// thread that happened to start a server would kill that server. So
// processes are started by one goroutine that locks its thread for good and
// never returns: no other goroutine runs on that thread, and it never ends.
// Starts take turns on it, which costs the fork and exec of each (a
// fraction of a millisecond); waiting for and stopping the processes do
// not go through it.
var starter struct {
	once sync.Once
	reqs chan startRequest
}

type startRequest struct {
	cmd  *exec.Cmd
	done chan error
}

// startCmd starts cmd from the starter thread.
func startCmd(cmd *exec.Cmd) error {
	starter.once.Do(func() {
		starter.reqs = make(chan startRequest)
		go func() {
			runtime.LockOSThread() // for good: see starter
			for r := range starter.reqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	starter.reqs <- startRequest{cmd: cmd, done: done}
	return <-done
}

// signalGroup sends sig to every process in process group pgid.
func signalGroup(pgid int, sig syscall.Signal) { _ = syscall.Kill(-pgid, sig) }

// groupAlive reports whether a live process is left in process group pgid.
// Zombies do not count: they are dead, waiting for whoever adopted them to
// reap them, which may take a while (or forever, when Caddy runs as PID 1).
func groupAlive(pgid int) bool {
	if syscall.Kill(-pgid, 0) != nil {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if state, group, ok := procStat(pid); ok && group == pgid && state != 'Z' && state != 'X' {
			return true
		}
	}
	return false
}

// procStat reads a process's state and process group from /proc.
func procStat(pid int) (state byte, pgrp int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, 0, false
	}
	pgrp, err = strconv.Atoi(string(f[2]))
	return f[0][0], pgrp, err == nil
}
