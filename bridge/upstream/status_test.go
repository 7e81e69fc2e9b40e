//go:build unix

package upstream

import (
	"syscall"
	"testing"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

func TestUpstream_StatusShowsAServerThatStoppedAnswering(t *testing.T) {
	u, _ := start(t, stdioSpec(fixture.Options{}), Options{})
	if st := u.Status(); st.LastMessage.IsZero() || !st.OldestCall.IsZero() {
		t.Fatalf("status of an idle ready server = %+v", st)
	}
	pid := u.Status().PID
	began := time.Now()
	result := make(chan error, 1)
	go func() {
		_, err := callWithin(u, "slow", `{"ms":1500}`)
		result <- err
	}()
	eventually(t, "the call under way", func() bool { return u.InFlight() == 1 })
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	time.Sleep(200 * time.Millisecond)

	st := u.Status()
	if st.State != StateReady || st.OldestCall.Before(began) || time.Since(st.OldestCall) < 200*time.Millisecond {
		t.Errorf("frozen: oldest call %v (the call began after %v), state %s", st.OldestCall, began, st.State)
	}
	if !st.LastMessage.Before(st.OldestCall) {
		t.Errorf("frozen: last message %v, not before the call under way began %v", st.LastMessage, st.OldestCall)
	}

	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := <-result; err != nil {
		t.Fatalf("the call after SIGCONT: %v", err)
	}
	st = u.Status()
	if !st.OldestCall.IsZero() || st.InFlight != 0 || !st.LastMessage.After(began) {
		t.Errorf("after the answer: oldest call %v, in flight %d, last message %v", st.OldestCall, st.InFlight, st.LastMessage)
	}
}

func TestUpstream_OldestCallIsTheOldestOfThoseUnderWay(t *testing.T) {
	u, _ := start(t, stdioSpec(fixture.Options{}), Options{})
	done := make(chan error, 2)
	go func() {
		_, err := callWithin(u, "slow", `{"ms":1000}`)
		done <- err
	}()
	eventually(t, "the first call under way", func() bool { return u.InFlight() == 1 })
	first := u.Status().OldestCall
	if first.IsZero() {
		t.Fatal("no oldest call with one under way")
	}
	go func() {
		_, err := callWithin(u, "slow", `{"ms":3000}`)
		done <- err
	}()
	eventually(t, "the second call under way", func() bool { return u.InFlight() == 2 })
	if got := u.Status().OldestCall; !got.Equal(first) {
		t.Errorf("oldest call with two under way = %v, want the first's %v", got, first)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := u.Status().OldestCall; !got.After(first) {
		t.Errorf("oldest call after the first ended = %v, want the second's, after %v", got, first)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := u.Status().OldestCall; !got.IsZero() {
		t.Errorf("oldest call with none under way = %v", got)
	}
}

func TestUpstream_LastMessageFollowsTheServerOnEveryTransport(t *testing.T) {
	transports(t, fixture.Options{}, func(t *testing.T, spec Spec) {
		u, _ := start(t, spec, Options{})
		began := time.Now()
		if got := text(t, call(t, u, "echo", `{"message":"hi"}`)); got != "hi" {
			t.Fatalf("echo = %q", got)
		}
		if st := u.Status(); st.LastMessage.Before(began) {
			t.Errorf("last message %v, before the answer to a call made at %v", st.LastMessage, began)
		}
	})
}
