package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a process the benchmark started, in a process group of its own.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
}

// start runs argv with extra environment entries, its output in
// dir/name.log.
func start(dir, name string, env []string, argv ...string) (*proc, error) {
	log, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// pid is the process's ID, also its group's.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop ends the whole process group: SIGTERM, then SIGKILL after 10s.
func (p *proc) stop() {
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
	// Members the leader left behind.
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	p.log.Close()
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// procInfo is what /proc says of a process.
type procInfo struct {
	pid, ppid int
	cmdline   string
	cpu       time.Duration // user + system
	rss, hwm  int64         // resident and peak resident bytes
}

// clockTick is the unit of the CPU times in /proc/<pid>/stat: USER_HZ,
// which is 100 on every Linux the benchmark runs on.
const clockTick = 10 * time.Millisecond

// readProc reads /proc/<pid>.
func readProc(pid int) (procInfo, error) {
	info := procInfo{pid: pid}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return info, err
	}
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) < 13 {
		return info, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	info.ppid, _ = strconv.Atoi(f[1])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	info.cpu = time.Duration(utime+stime) * clockTick
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return info, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			info.rss = kb << 10
		case "VmHWM":
			info.hwm = kb << 10
		}
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	info.cmdline = strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " ")
	return info, nil
}

// tree returns the processes of the tree rooted at root, except the
// subtrees below it whose command line contains one of skip (the upstream
// servers, which belong to no proxy).
func tree(root int, skip ...string) []procInfo {
	all := map[int][]procInfo{}
	entries, _ := os.ReadDir("/proc")
	var rootInfo *procInfo
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		info, err := readProc(pid)
		if err != nil {
			continue
		}
		all[info.ppid] = append(all[info.ppid], info)
		if pid == root {
			rootInfo = &info
		}
	}
	if rootInfo == nil {
		return nil
	}
	var out []procInfo
	var walk func(procInfo)
	walk = func(p procInfo) {
		for _, s := range skip {
			// The root is never skipped: its command line may name the
			// upstream servers it starts (bench/floor's does).
			if p.pid != root && strings.Contains(p.cmdline, s) {
				return
			}
		}
		out = append(out, p)
		for _, c := range all[p.pid] {
			walk(c)
		}
	}
	walk(*rootInfo)
	return out
}

// usage sums the CPU time and the resident and peak resident memory of a
// set of processes.
type usage struct {
	cpu      time.Duration
	rss, hwm int64
}

func usageOf(ps []procInfo) usage {
	var u usage
	for _, p := range ps {
		u.cpu += p.cpu
		u.rss += p.rss
		u.hwm += p.hwm
	}
	return u
}

// resetPeak resets the peak resident memory (VmHWM) of processes, so that
// it measures from now on.
func resetPeak(ps []procInfo) {
	for _, p := range ps {
		_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.pid), []byte("5"), 0)
	}
}

// runQuiet runs a command to completion within limit, returning its output
// on failure.
func runQuiet(ctx context.Context, limit time.Duration, dir string, env []string, argv ...string) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) || ctx.Err() != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, out)
		}
		return fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return nil
}
