//go:build unix && !linux

package upstream

import (
	"os/exec"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// startCmd starts cmd. There is no parent-death signal to tie to a thread
// here (see the Linux starter).
func startCmd(cmd *exec.Cmd) error { return cmd.Start() }

// signalGroup sends sig to every process in process group pgid.
func signalGroup(pgid int, sig syscall.Signal) { _ = syscall.Kill(-pgid, sig) }

// groupAlive reports whether a process is left in process group pgid.
func groupAlive(pgid int) bool { return syscall.Kill(-pgid, 0) == nil }
