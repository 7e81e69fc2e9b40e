//go:build unix && !linux

package upstream

import "syscall"

// running reports whether process pid exists.
func running(pid int) bool { return syscall.Kill(pid, 0) == nil }
