package upstream

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Limits bound the resources of a stdio server's process, on Linux, with
// resource limits (setrlimit(2)) applied to the process right after it
// starts, which whatever it starts inherits. Each limit binds each process
// on its own, not the process group as a whole; zero leaves a resource
// unbounded.
type Limits struct {
	// Memory bounds the process's data (RLIMIT_DATA: its heap and private
	// writable mappings), in bytes. Not its address space (RLIMIT_AS):
	// Node's V8 and Go reserve far more address space than they use, and
	// would fail to start under a bound on it.
	Memory int64 `json:"memory,omitempty"`
	// CPU bounds the CPU time the process may use (RLIMIT_CPU), rounded up
	// to whole seconds: past it, SIGXCPU, and SIGKILL five seconds later
	// for a process that ignores it.
	CPU time.Duration `json:"cpu,omitempty"`
	// OpenFiles bounds the file descriptors the process may hold open
	// (RLIMIT_NOFILE).
	OpenFiles uint64 `json:"open_files,omitempty"`
	// Processes bounds the processes and threads of the process's real
	// user ID (RLIMIT_NPROC): all of them, Caddy's own threads and every
	// other server running as the same user included, so it only means
	// something for servers running as a user of their own. It does not
	// bind root.
	Processes uint64 `json:"processes,omitempty"`
}

// cpuGrace is how long past the CPU limit a process that ignores SIGXCPU
// gets SIGKILL.
const cpuGrace = 5

// Validate reports limits that cannot apply: negative ones, or any
// outside Linux, where a server that should be bounded must not run
// unbounded.
func (l *Limits) Validate() error {
	if l == nil {
		return nil
	}
	if l.Memory < 0 || l.CPU < 0 {
		return errors.New("limits: memory and cpu must be positive")
	}
	return limitsSupported()
}

// String describes the limits set, as a configuration writes them.
func (l *Limits) String() string {
	var parts []string
	if l.Memory > 0 {
		parts = append(parts, "memory "+formatBytes(l.Memory))
	}
	if l.CPU > 0 {
		parts = append(parts, "cpu "+l.CPU.String())
	}
	if l.OpenFiles > 0 {
		parts = append(parts, fmt.Sprintf("open_files %d", l.OpenFiles))
	}
	if l.Processes > 0 {
		parts = append(parts, fmt.Sprintf("processes %d", l.Processes))
	}
	return strings.Join(parts, ", ")
}

// LimitError reports a stdio server stopped by one of its Limits: killed
// by the kernel (cpu), or ended when the resource ran out (memory, open
// files, processes), which it says on its stderr. The last is a reading of
// what it wrote: a server that fails to allocate and says nothing of it
// is not recognized.
type LimitError struct {
	// Limit is the limit's name in the configuration: memory, cpu,
	// open_files or processes.
	Limit string
	// Value is the limit, as the configuration writes it.
	Value string
	// Err is how the process ended.
	Err error
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%v: stopped by its %s limit (%s)", e.Err, e.Limit, e.Value)
}

func (e *LimitError) Unwrap() error { return e.Err }

// limitSigns are what processes write to stderr when a resource runs out,
// by limit, in lower case.
var limitSigns = []struct {
	limit string
	signs []string
}{
	{"memory", []string{"out of memory", "memoryerror", "cannot allocate memory", "bad_alloc", "allocation failed"}},
	{"open_files", []string{"too many open files", "emfile"}},
	{"processes", []string{"resource temporarily unavailable", "eagain", "cannot fork", "fork failed"}},
}

// signOf returns the limit a line of stderr says the process ran into,
// among those set; "" for none.
func (l *Limits) signOf(line string) string {
	line = strings.ToLower(line)
	for _, s := range limitSigns {
		if l.value(s.limit) == "" {
			continue
		}
		for _, sign := range s.signs {
			if strings.Contains(line, sign) {
				return s.limit
			}
		}
	}
	return ""
}

// value returns the named limit as the configuration writes it, "" when
// it is not set.
func (l *Limits) value(limit string) string {
	switch {
	case limit == "memory" && l.Memory > 0:
		return formatBytes(l.Memory)
	case limit == "cpu" && l.CPU > 0:
		return l.CPU.String()
	case limit == "open_files" && l.OpenFiles > 0:
		return fmt.Sprint(l.OpenFiles)
	case limit == "processes" && l.Processes > 0:
		return fmt.Sprint(l.Processes)
	}
	return ""
}

// limitHit returns the *LimitError for a process under l that ended with
// waitErr (exit describing it) after its stderr said it ran into the
// limit said ("" for none); nil when no limit seems to have stopped it.
func (l *Limits) limitHit(exit, waitErr error, said string) error {
	if l == nil {
		return nil
	}
	if l.CPU > 0 && killedByCPULimit(waitErr, l.CPU) {
		return &LimitError{Limit: "cpu", Value: l.value("cpu"), Err: exit}
	}
	if waitErr == nil || said == "" {
		return nil
	}
	return &LimitError{Limit: said, Value: l.value(said), Err: exit}
}
