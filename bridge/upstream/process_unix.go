//go:build unix && !linux

package upstream

import "syscall"

func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// signalGroup sends sig to every process in process group pgid.
func signalGroup(pgid int, sig syscall.Signal) { _ = syscall.Kill(-pgid, sig) }

// groupAlive reports whether a process is left in process group pgid.
func groupAlive(pgid int) bool { return syscall.Kill(-pgid, 0) == nil }
