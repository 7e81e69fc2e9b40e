package bridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/openapi"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// A tool the server runs as a task (MCP tasks: its execution.taskSupport
// is "optional" or "required") is served over REST as a long operation:
//
//	POST <tool> with Prefer: respond-async
//	          202 Accepted, Location: <base>/tasks/<id>, the task's status
//	GET  tasks/<id>
//	          while it works: 202 with its status and Retry-After; once it
//	          has completed, the call's answer (200 and the result, or the
//	          error a call gets); cancelled: 409
//	DELETE tasks/<id>
//	          cancels a task that works (200 and its status); of a task
//	          that has ended, forgets it (204)
//
// A POST without the preference to a task-only tool starts a task and
// waits for it up to the tool's timeout: its answer when it ends in time,
// else 504 with the task's Location, to poll. A preference on a tool that
// runs no task is ignored (RFC 7240): the call answers synchronously.
//
// A task id is the bridge's own: 128 random bits, never the server's,
// valid under the path of the server that runs it, and bound to the
// caller who started it (IdentityFrom): another caller gets 404, as for
// an id that never existed. Without identities, the id alone is the
// capability. The TaskStore keeps a task while it works, and its outcome
// for the server's TaskTTL after it ends.

// TaskCaller is what the bridge needs of a server to run its tools as
// tasks; *upstream.Upstream implements it. A task runs in the session of
// the caller who started it: its later requests carry that caller's
// context (identity and all).
type TaskCaller interface {
	// StartTask calls a tool as a task and returns the task the server
	// created.
	StartTask(ctx context.Context, name string, args json.RawMessage, ttl time.Duration) (*upstream.Task, error)
	// GetTask returns a task's state.
	GetTask(ctx context.Context, id string) (*upstream.Task, error)
	// TaskResult returns the tools/call result of a task that has ended.
	TaskResult(ctx context.Context, id string) (*upstream.CallResult, error)
	// CancelTask cancels a task and returns its state.
	CancelTask(ctx context.Context, id string) (*upstream.Task, error)
}

// TasksSegment is the path segment below a server's base of its tasks;
// no tool takes it.
const TasksSegment = "tasks"

// Defaults of the task settings.
const (
	// DefaultTaskTTL is how long the outcome of a task is kept after it
	// ends.
	DefaultTaskTTL = 10 * time.Minute
	// DefaultMaxTasks bounds the tasks a TaskStore keeps.
	DefaultMaxTasks = 1000
	// DefaultMaxTaskBytes bounds the bytes of the results a TaskStore
	// keeps.
	DefaultMaxTaskBytes = 64 << 20
)

// Polling of a task's state: at the interval the server suggests, within
// these bounds; when it suggests none, from minTaskPoll doubling up to
// defaultTaskPoll.
const (
	minTaskPoll     = 200 * time.Millisecond
	maxTaskPoll     = 5 * time.Second
	defaultTaskPoll = time.Second
	// taskRequestTimeout bounds each request about a task.
	taskRequestTimeout = 30 * time.Second
	// maxTaskPollErrors is how many polls in a row may fail before the
	// task is given up as failed.
	maxTaskPollErrors = 5
)

// TaskLimits bound a TaskStore; fields left zero take their defaults.
type TaskLimits struct {
	// MaxTasks bounds the tasks kept, working or ended; DefaultMaxTasks
	// when zero. A start past it, with no ended task to drop, gets 503.
	MaxTasks int
	// MaxBytes bounds the bytes of the results kept; DefaultMaxTaskBytes
	// when zero. A result that does not fit, after dropping the oldest
	// ended tasks, fails its task.
	MaxBytes int64
}

// TaskStore keeps the tasks started over REST: for each, a goroutine
// follows it on the server until it ends and keeps its outcome; a janitor
// drops outcomes past their TTL. It belongs to whoever made it, who
// closes it: a server pool keeps one per server, so that tasks outlive a
// configuration reload that keeps the server. It is safe for concurrent
// use.
type TaskStore struct {
	limits TaskLimits
	log    *zap.Logger

	ctx    context.Context // ends on Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the janitor and the watchers

	mu    sync.Mutex
	tasks map[string]*task
	bytes int64 // of the results kept
}

// task is one task of a TaskStore.
type task struct {
	id      string // the bridge's
	owner   string // the ID of the caller who started it; "" for none
	server  *ServerConfig
	tool    *upstream.Tool
	remote  string // the server's id
	created time.Time
	ttl     time.Duration
	done    chan struct{} // closed when it ended
	stop    context.CancelFunc

	// guarded by the store's mu:
	state upstream.Task
	ended time.Time            // when it ended; zero while it works
	res   *upstream.CallResult // the result of a task that completed
	size  int64                // of res, as the server sent it
	fail  *httpError           // why a task that failed has no result
}

// NewTaskStore returns a TaskStore with limits and starts its janitor;
// Close ends it.
func NewTaskStore(limits TaskLimits, log *zap.Logger) *TaskStore {
	if limits.MaxTasks <= 0 {
		limits.MaxTasks = DefaultMaxTasks
	}
	if limits.MaxBytes <= 0 {
		limits.MaxBytes = DefaultMaxTaskBytes
	}
	if log == nil {
		log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &TaskStore{limits: limits, log: log, ctx: ctx, cancel: cancel, tasks: map[string]*task{}}
	s.wg.Go(s.janitor)
	return s
}

// Close stops following the tasks (they run on at their servers) and
// forgets them, and waits for the store's goroutines to end.
func (s *TaskStore) Close() {
	s.mu.Lock()
	s.cancel()
	s.mu.Unlock()
	s.wg.Wait()
	s.mu.Lock()
	s.tasks, s.bytes = map[string]*task{}, 0
	s.mu.Unlock()
}

// janitor drops the outcomes past their TTL, until the store closes.
func (s *TaskStore) janitor() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-tick.C:
			s.expire(now)
		}
	}
}

// expire drops the tasks that ended more than their TTL before now.
func (s *TaskStore) expire(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, t := range s.tasks {
		if !t.ended.IsZero() && now.Sub(t.ended) >= t.ttl {
			s.dropLocked(id, t)
		}
	}
}

func (s *TaskStore) dropLocked(id string, t *task) {
	delete(s.tasks, id)
	s.bytes -= t.size
}

// oldestEndedLocked returns the task that ended first, nil if none has.
func (s *TaskStore) oldestEndedLocked() (string, *task) {
	var (
		id  string
		old *task
	)
	for k, t := range s.tasks {
		if !t.ended.IsZero() && (old == nil || t.ended.Before(old.ended)) {
			id, old = k, t
		}
	}
	return id, old
}

// newID returns 128 random bits in hex: the IDs of tasks and of parked
// calls.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// callerOf is the key a task is bound to: the ID of the caller ctx
// carries, "" for none.
func callerOf(ctx context.Context) string {
	if id, ok := IdentityFrom(ctx); ok {
		return id.ID
	}
	return ""
}

// add keeps a task that started, and starts following it with tc in
// ctx's values (the caller's identity and all) until it ends or the store
// closes. It fails when the store is full of tasks that work.
func (s *TaskStore) add(ctx context.Context, tc TaskCaller, t *task) error {
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	t.stop = stop
	// Under the lock, which Close takes to end the store's context: a
	// watcher starts before Close waits for the watchers, or not at all.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		stop()
		return errors.New("the task store is closed")
	}
	for len(s.tasks) >= s.limits.MaxTasks {
		id, old := s.oldestEndedLocked()
		if old == nil {
			stop()
			return fmt.Errorf("%d tasks are under way, the limit", s.limits.MaxTasks)
		}
		s.dropLocked(id, old)
	}
	s.tasks[t.id] = t
	stopWith := context.AfterFunc(s.ctx, stop)
	s.wg.Go(func() {
		defer stopWith()
		defer stop()
		s.watch(wctx, tc, t)
	})
	return nil
}

// get returns task id if the caller of ctx started it on server.
func (s *TaskStore) get(ctx context.Context, server *ServerConfig, id string) *task {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tasks[id]
	if t == nil || t.server.Name != server.Name || t.owner != callerOf(ctx) {
		return nil
	}
	return t
}

// watch follows t on its server until it ends, then keeps its outcome.
func (s *TaskStore) watch(ctx context.Context, tc TaskCaller, t *task) {
	fails := 0
	// Without the server's suggestion, polls start at minTaskPoll and
	// double up to defaultTaskPoll: a short task answers soon.
	guess := minTaskPoll
	for {
		s.mu.Lock()
		wait := t.state.PollInterval
		s.mu.Unlock()
		if wait <= 0 {
			wait, guess = guess, min(2*guess, defaultTaskPoll)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(max(wait, minTaskPoll), maxTaskPoll)):
		}
		rctx, cancel := context.WithTimeout(ctx, taskRequestTimeout)
		state, err := tc.GetTask(rctx, t.remote)
		cancel()
		var rpc *upstream.RPCError
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && (errors.As(err, &rpc) || fails+1 >= maxTaskPollErrors):
			// The server forgot the task (it restarted), or is gone.
			s.log.Warn("the server no longer answers for a task", zap.String("server", t.server.Name),
				zap.String("tool", t.tool.Name), zap.String("task", t.id), zap.Error(err))
			s.finish(t, nil, nil, taskLost(err))
			return
		case err != nil:
			fails++
			continue
		}
		fails = 0
		if !state.Status.Terminal() {
			// A poll sees the status only once the outcome is kept.
			s.mu.Lock()
			t.state = *state
			s.mu.Unlock()
		}
		switch state.Status {
		case upstream.TaskWorking:
			continue
		case upstream.TaskInputRequired:
			// The server asks for input in the answer to tasks/result,
			// which the session's elicitation policy gives: ask for it,
			// and for the result, which comes when the task ends.
			res, err := tc.TaskResult(ctx, t.remote)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				state.Status, state.StatusMessage = upstream.TaskCompleted, ""
			}
			s.finish(t, state, res, err)
			return
		}
		var res *upstream.CallResult
		if state.Status != upstream.TaskCancelled {
			rctx, cancel := context.WithTimeout(ctx, taskRequestTimeout)
			res, err = tc.TaskResult(rctx, t.remote)
			cancel()
			if ctx.Err() != nil {
				return
			}
		}
		s.finish(t, state, res, err)
		return
	}
}

// taskLost is the outcome of a task its server no longer answers for.
func taskLost(err error) error {
	// Not wrapped: the answer is 502 whatever the error was.
	return fmt.Errorf("the server no longer answers for the task: %v", err)
}

// finish records how t ended: its last state, and its result or why it
// has none.
func (s *TaskStore) finish(t *task, state *upstream.Task, res *upstream.CallResult, err error) {
	var fail *httpError
	switch {
	case state != nil && state.Status == upstream.TaskCancelled:
		res = nil
	case err != nil:
		fail, res = callFailed(context.Background(), t.server, "", t.tool.Name, err, 0), nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !t.ended.IsZero() {
		return // cancelled meanwhile
	}
	if state != nil {
		t.state = *state
	} else {
		t.state.Status = upstream.TaskFailed
	}
	if fail != nil && t.state.Status == upstream.TaskCompleted {
		t.state.Status = upstream.TaskFailed
	}
	size := int64(0)
	if res != nil {
		size = int64(len(res.Raw))
	}
	for res != nil && s.bytes+size > s.limits.MaxBytes {
		id, old := s.oldestEndedLocked()
		if old == nil {
			fail = &httpError{Status: http.StatusInsufficientStorage, Outcome: OutcomeRejected, Detail: errorDetail{
				Server: t.server.Name, Tool: t.tool.Name,
				Message: fmt.Sprintf("the result of the task (%d bytes) is more than the proxy keeps of task results", size)}}
			t.state.Status, res, size = upstream.TaskFailed, nil, 0
			break
		}
		s.dropLocked(id, old)
	}
	t.res, t.size, t.fail, t.ended = res, size, fail, time.Now()
	s.log.Debug("task ended", zap.String("server", t.server.Name), zap.String("tool", t.tool.Name), zap.String("task", t.id),
		zap.String("status", string(t.state.Status)), zap.Duration("took", t.ended.Sub(t.created)))
	if _, kept := s.tasks[t.id]; kept {
		s.bytes += size
	}
	close(t.done)
}

// outcome is how t, which has ended, answers: its result, or the answer
// of a call that failed, or 409 for a task that was cancelled. location
// is the task's.
func (s *TaskStore) outcome(t *task, location string) (*upstream.CallResult, *httpError) {
	s.mu.Lock()
	res, fail, status := t.res, t.fail, t.state.Status
	s.mu.Unlock()
	switch {
	case status == upstream.TaskCancelled:
		return nil, &httpError{Status: http.StatusConflict, Outcome: OutcomeCanceled, Detail: errorDetail{Server: t.server.Name, Tool: t.tool.Name,
			Message: fmt.Sprintf("the task of tool %q at %s was cancelled", t.tool.Name, location)}}
	case fail != nil:
		e := *fail
		return nil, &e
	case res.IsError:
		return nil, toolError(res, t.server, t.tool)
	}
	return res, nil
}

// cancelTask cancels t at its server and marks it cancelled.
func (s *TaskStore) cancelTask(ctx context.Context, tc TaskCaller, t *task) (*upstream.Task, error) {
	rctx, cancel := context.WithTimeout(ctx, taskRequestTimeout)
	defer cancel()
	state, err := tc.CancelTask(rctx, t.remote)
	if err != nil {
		return nil, err
	}
	t.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.ended.IsZero() {
		t.state, t.ended = *state, time.Now()
		t.state.Status = upstream.TaskCancelled
		close(t.done)
	}
	return &t.state, nil
}

// forget drops t.
func (s *TaskStore) forget(t *task) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tasks[t.id] == t {
		s.dropLocked(t.id, t)
	}
}

// startsTask says whether a call of rt starts a task and answers 202: the
// tool runs as a task and the caller prefers respond-async. A preference
// for a tool that runs no task is ignored (RFC 7240).
func startsTask(r *http.Request, rt *route) bool {
	return rt.task != "" && prefersAsync(r.Header)
}

// prefersAsync says whether header's Prefer asks for respond-async.
func prefersAsync(header http.Header) bool {
	for _, v := range header.Values("Prefer") {
		for pref := range strings.SplitSeq(v, ",") {
			name, _, _ := strings.Cut(strings.TrimSpace(pref), ";")
			if strings.EqualFold(strings.TrimSpace(name), "respond-async") {
				return true
			}
		}
	}
	return false
}

// startTask starts a call of rt with checked arguments args as a task,
// kept in the server's store for the caller of ctx, and returns it and
// its Location. base is the server's base path as the client sees it.
func (b *Bridge) startTask(ctx context.Context, st *serverState, rt *route, args json.RawMessage, base string) (*task, string, *httpError) {
	s, tool := st.cfg, rt.tool.Name
	tc := s.Upstream.(TaskCaller)
	release, e := st.slot(ctx, tool, nil)
	if e != nil {
		return nil, "", e
	}
	limit := min(s.timeoutFor(tool), taskRequestTimeout)
	startCtx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	remote, err := tc.StartTask(startCtx, tool, args, 0)
	release()
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, "", clientGone
	case err != nil:
		return nil, "", callFailed(startCtx, s, base, tool, err, limit)
	}
	t := &task{id: newID(), owner: callerOf(ctx), server: s, tool: rt.tool, remote: remote.ID,
		created: time.Now(), ttl: s.TaskTTL, done: make(chan struct{}), state: *remote}
	if err := st.tasks.add(ctx, tc, t); err != nil {
		// Nobody could ask for it: cancel it.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), taskRequestTimeout)
		defer cancel()
		if _, cerr := tc.CancelTask(cctx, remote.ID); cerr != nil {
			b.log.Warn("a task the proxy cannot keep could not be cancelled", zap.String("server", s.Name), zap.String("tool", tool), zap.Error(cerr))
		}
		return nil, "", &httpError{Status: http.StatusServiceUnavailable, Outcome: OutcomeRejected, RetryAfter: 5 * time.Second, Cause: err,
			Detail: errorDetail{Server: s.Name, Tool: tool, Message: fmt.Sprintf("server %q: tool %q cannot start a task now: %v", s.Name, tool, err)}}
	}
	b.log.Debug("task started", zap.String("server", s.Name), zap.String("tool", tool), zap.String("task", t.id))
	return t, base + "/" + TasksSegment + "/" + t.id, nil
}

// startAsync answers a call of rt, with checked arguments args, that
// prefers respond-async: it starts the task and answers 202 with its
// Location. base is the server's base path as the client sees it.
func (b *Bridge) startAsync(w http.ResponseWriter, r *http.Request, st *serverState, rt *route, args json.RawMessage, base string) *httpError {
	t, location, e := b.startTask(r.Context(), st, rt, args, base)
	if e != nil {
		return e
	}
	w.Header().Set("Location", location)
	w.Header().Set("Preference-Applied", "respond-async")
	b.writeTaskStatus(w, st.tasks, t)
	return nil
}

// awaitTask calls rt, a task-only tool, with checked arguments args: it
// starts the task and waits for it up to the tool's timeout. It returns
// the task's result when it ends in time (and forgets the task, whose
// caller has it), else 504 with the task's Location, where it goes on.
// The task of a client that goes away is cancelled. base is the server's
// base path as the client sees it.
func (b *Bridge) awaitTask(ctx context.Context, st *serverState, rt *route, args json.RawMessage, base string) (*upstream.CallResult, *httpError) {
	s, tool := st.cfg, rt.tool.Name
	start := time.Now()
	t, location, e := b.startTask(ctx, st, rt, args, base)
	if e != nil {
		return nil, e
	}
	timeout := s.timeoutFor(tool)
	timer := time.NewTimer(timeout - time.Since(start))
	defer timer.Stop()
	select {
	case <-t.done:
		res, e := st.tasks.outcome(t, location)
		st.tasks.forget(t)
		return res, e
	case <-ctx.Done():
		// Nobody else knows the task's id.
		if _, err := st.tasks.cancelTask(context.WithoutCancel(ctx), s.Upstream.(TaskCaller), t); err != nil {
			b.log.Debug("the task of a client that went away could not be cancelled", zap.String("server", s.Name), zap.String("tool", tool), zap.Error(err))
		}
		st.tasks.forget(t)
		return nil, clientGone
	case <-timer.C:
		return nil, &httpError{Status: http.StatusGatewayTimeout, Outcome: OutcomeTimeout, Header: http.Header{"Location": {location}},
			RetryAfter: taskRetryAfter(st.tasks, t),
			Detail: errorDetail{Server: s.Name, Tool: tool, Message: fmt.Sprintf(
				"server %q: tool %q runs as a task, which did not end within %s; it goes on: poll GET %s for its result",
				s.Name, tool, timeout, location)}}
	}
}

// taskStatus is the body that describes a task.
type taskStatus struct {
	ID            string `json:"id"`
	Tool          string `json:"tool"`
	Status        string `json:"status"`
	StatusMessage string `json:"statusMessage,omitempty"`
	CreatedAt     string `json:"createdAt"`
	LastUpdatedAt string `json:"lastUpdatedAt,omitempty"`
	// PollInterval is how often to poll, in milliseconds.
	PollInterval int64 `json:"pollInterval,omitempty"`
}

// status returns t's status body and when to poll again, under the
// store's lock.
func (s *TaskStore) status(t *task) (taskStatus, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	poll := t.state.PollInterval
	if poll <= 0 {
		poll = defaultTaskPoll
	}
	return taskStatus{ID: t.id, Tool: t.tool.Name, Status: string(t.state.Status), StatusMessage: t.state.StatusMessage,
		CreatedAt: t.created.UTC().Format(time.RFC3339), LastUpdatedAt: t.state.LastUpdatedAt,
		PollInterval: poll.Milliseconds()}, poll
}

// taskRetryAfter is when to poll t again.
func taskRetryAfter(s *TaskStore, t *task) time.Duration {
	_, poll := s.status(t)
	return max(poll, time.Second)
}

// writeTaskStatus writes t's status: 202 while it works, 200 once it has
// ended.
func (b *Bridge) writeTaskStatus(w http.ResponseWriter, s *TaskStore, t *task) {
	body, poll := s.status(t)
	status := http.StatusOK
	if !upstream.TaskStatus(body.Status).Terminal() {
		status = http.StatusAccepted
		w.Header().Set("Retry-After", fmt.Sprint(int(max(poll, time.Second).Round(time.Second).Seconds())))
	}
	out, _ := json.Marshal(body)
	writeJSON(w, status, out)
}

// writeTaskEnd writes the outcome of t, which has ended, as a call's
// answer (see outcome). location is the task's.
func (b *Bridge) writeTaskEnd(w http.ResponseWriter, s *TaskStore, t *task, location string) *httpError {
	res, e := s.outcome(t, location)
	if e != nil {
		return e
	}
	w.Header().Set("Content-Location", location)
	writeJSON(w, http.StatusOK, renderResult(res, t.tool))
	return nil
}

// taskPage is the page of a server's tasks: GET polls one and DELETE
// cancels it, with the key of calls, audited as tasks/get and
// tasks/cancel requests.
func (b *Bridge) taskPage() page {
	get, cancel := b.audited("tasks/get", b.serveTask), b.audited("tasks/cancel", b.serveTask)
	return page{methods: []string{http.MethodGet, http.MethodDelete}, guard: guardData, cache: "no-store",
		serve: func(w http.ResponseWriter, r *http.Request, p *page, base string) *httpError {
			if r.Method == http.MethodDelete {
				return cancel(w, r, p, base)
			}
			return get(w, r, p, base)
		}}
}

// serveTask answers GET and DELETE of a task of the page's server. base
// is the server's.
func (b *Bridge) serveTask(w http.ResponseWriter, r *http.Request, p *page, base string) *httpError {
	st := p.server
	// The route table is looked up with Handler, which sets no path
	// values.
	id := r.URL.Path[len(p.prefix)+len("/"+TasksSegment+"/"):]
	location := base + "/" + TasksSegment + "/" + id
	var t *task
	if st.tasks != nil {
		t = st.tasks.get(r.Context(), st.cfg, id)
	}
	if t == nil {
		return &httpError{Status: http.StatusNotFound, Detail: errorDetail{Server: st.cfg.Name,
			Message: fmt.Sprintf("server %q has no task %q: it never existed, it was started by another caller, or its outcome was dropped %s after it ended",
				st.cfg.Name, id, st.cfg.TaskTTL)}}
	}
	ended := false
	select {
	case <-t.done:
		ended = true
	default:
	}
	if r.Method == http.MethodDelete {
		if ended {
			st.tasks.forget(t)
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
		if _, err := st.tasks.cancelTask(r.Context(), st.cfg.Upstream.(TaskCaller), t); err != nil {
			return callFailed(r.Context(), st.cfg, base, t.tool.Name, err, taskRequestTimeout)
		}
		b.log.Debug("task cancelled", zap.String("server", st.cfg.Name), zap.String("tool", t.tool.Name), zap.String("task", t.id))
		b.writeTaskStatus(w, st.tasks, t)
		return nil
	}
	if !ended {
		w.Header().Set("Location", location)
		b.writeTaskStatus(w, st.tasks, t)
		return nil
	}
	return b.writeTaskEnd(w, st.tasks, t, location)
}

// taskNote is what a document says of a tool that runs as a task.
func taskNote(support string) string {
	switch support {
	case upstream.TaskRequired:
		return "Runs as a task: call it with the header `Prefer: respond-async` for 202 and the task's Location to poll (GET) or cancel (DELETE); without it, the call waits for the task up to its timeout, then answers 504 with the Location."
	case upstream.TaskOptional:
		return "Can run as a task: with the header `Prefer: respond-async` the call answers 202 and the task's Location to poll (GET) or cancel (DELETE)."
	}
	return ""
}

// taskEndpoints are the endpoints of the tasks of view v: none unless a
// tool of it runs as a task. namer hands out their operationIds.
func (s *serverState) taskEndpoints(v *view, namer *openapi.Namer) []openapi.Endpoint {
	if !slices.ContainsFunc(v.routes, func(rt *route) bool { return rt.task != "" }) {
		return nil
	}
	eps := make([]openapi.Endpoint, 0, 2)
	for _, k := range []openapi.EndpointKind{openapi.GetTask, openapi.CancelTask} {
		eps = append(eps, openapi.Endpoint{Kind: k, Path: k.EndpointPath(), OperationID: namer.OperationID(k.EndpointName()), Server: s.cfg.Name})
	}
	return eps
}

// taskStoreOf returns the TaskStore of server s when its Caller runs
// tasks: its own, or the bridge's, made on first need; nil when it runs
// none.
func (b *Bridge) taskStoreOf(s *ServerConfig) *TaskStore {
	if _, ok := s.Upstream.(TaskCaller); !ok {
		return nil
	}
	if s.Tasks != nil {
		return s.Tasks
	}
	if b.tasks == nil {
		b.tasks = NewTaskStore(TaskLimits{}, b.log)
	}
	return b.tasks
}
