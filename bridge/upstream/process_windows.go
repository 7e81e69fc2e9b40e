package upstream

import (
	"os"
	"os/exec"
	"syscall"
)

// Windows has no process groups to signal: the server itself is killed, and
// what it spawned is left to it.

func sysProcAttr() *syscall.SysProcAttr { return nil }

func startCmd(cmd *exec.Cmd) error { return cmd.Start() }

func signalGroup(pid int, _ syscall.Signal) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}

func groupAlive(int) bool { return false }
