package jobs

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// ManagerOptions configure a Manager.
type ManagerOptions struct {
	// MaxConcurrentJobs is the most jobs this migrator works on at once.
	// Default 4.
	MaxConcurrentJobs int
	// SessionTTL is the lease TTL of this migrator's claims: how long after
	// it dies its files wait before another migrator takes them. Default
	// 10s.
	SessionTTL time.Duration
	// RescanInterval is how often the whole job list is re-read, besides
	// the watch. Default 5s.
	RescanInterval time.Duration
}

// Manager watches the jobs in etcd and runs, in this migrator, the import,
// stream and verify jobs that are pending or running, up to MaxConcurrentJobs at
// a time. It also tells subscribers (WatchJob streams) when anything of a
// job changes.
type Manager struct {
	env    *Env
	opts   ManagerOptions
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	wake   chan struct{}

	mu      sync.Mutex
	session *concurrency.Session
	runs    map[string]*jobRun
	subs    map[string]map[chan struct{}]struct{}
}

type jobRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// StartManager starts a manager; Close stops it.
func StartManager(env *Env, o ManagerOptions) (*Manager, error) {
	env.defaults()
	if o.MaxConcurrentJobs <= 0 {
		o.MaxConcurrentJobs = 4
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 10 * time.Second
	}
	if o.RescanInterval <= 0 {
		o.RescanInterval = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		env: env, opts: o, ctx: ctx, cancel: cancel, done: make(chan struct{}), wake: make(chan struct{}, 1),
		runs: map[string]*jobRun{}, subs: map[string]map[chan struct{}]struct{}{},
	}
	s, err := m.newSession()
	if err != nil {
		cancel()
		return nil, err
	}
	m.session = s
	go m.loop()
	return m, nil
}

func (m *Manager) newSession() (*concurrency.Session, error) {
	ttl := max(1, int(m.opts.SessionTTL/time.Second))
	return concurrency.NewSession(m.env.Store.Client(), concurrency.WithTTL(ttl), concurrency.WithContext(m.ctx))
}

// Close stops every run (their checkpoints stay), then revokes the
// session, which releases this migrator's claims at once.
func (m *Manager) Close() {
	m.cancel()
	<-m.done
	m.stopAll()
	m.mu.Lock()
	s := m.session
	m.mu.Unlock()
	if s != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = m.env.Store.Client().Revoke(ctx, s.Lease())
		_ = s.Close()
	}
}

// abandon stops the manager as a crash would: runs stop without releasing
// their claims, and the session's lease is left to expire.
func (m *Manager) abandon() {
	m.env.crashed.Store(true)
	m.cancel()
	<-m.done
	m.stopAll()
}

// Subscribe returns a channel that receives (coalesced) whenever a key of
// job id changes, and a function ending the subscription.
func (m *Manager) Subscribe(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	m.mu.Lock()
	if m.subs[id] == nil {
		m.subs[id] = map[chan struct{}]struct{}{}
	}
	m.subs[id][ch] = struct{}{}
	m.mu.Unlock()
	return ch, func() {
		m.mu.Lock()
		delete(m.subs[id], ch)
		if len(m.subs[id]) == 0 {
			delete(m.subs, id)
		}
		m.mu.Unlock()
	}
}

// Running lists the jobs this migrator is working on.
func (m *Manager) Running() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.runs))
	for id := range m.runs {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// Wake asks the manager to look for jobs to run now.
func (m *Manager) Wake() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *Manager) notify(id string) {
	m.mu.Lock()
	for ch := range m.subs[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	m.mu.Unlock()
}

func (m *Manager) loop() {
	defer close(m.done)
	log := m.env.Logger
	store := m.env.Store
	tick := time.NewTicker(m.opts.RescanInterval)
	defer tick.Stop()
	for m.ctx.Err() == nil {
		rev, err := m.rescan()
		if err != nil {
			if m.ctx.Err() == nil {
				log.Warn("cannot list jobs; retrying", "err", err)
			}
			m.sleep(time.Second)
			continue
		}
		wctx, cancelWatch := context.WithCancel(clientv3.WithRequireLeader(m.ctx))
		wch := store.Client().Watch(wctx, store.JobsPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		m.mu.Lock()
		sessionDone := m.session.Done()
		m.mu.Unlock()
	watching:
		for {
			select {
			case wr, ok := <-wch:
				if !ok || wr.Err() != nil {
					if m.ctx.Err() == nil {
						log.Warn("job watch ended; re-reading jobs", "err", wr.Err())
						m.sleep(200 * time.Millisecond)
					}
					break watching
				}
				for _, ev := range wr.Events {
					m.event(ev)
				}
			case <-tick.C:
				if _, err := m.rescan(); err != nil && m.ctx.Err() == nil {
					log.Warn("cannot list jobs", "err", err)
				}
			case <-m.wake:
				if _, err := m.rescan(); err != nil && m.ctx.Err() == nil {
					log.Warn("cannot list jobs", "err", err)
				}
			case <-sessionDone:
				if m.ctx.Err() != nil {
					break watching
				}
				log.Warn("etcd session expired: this migrator's claims are gone; stopping its jobs and starting a new session")
				m.stopAll()
				for m.ctx.Err() == nil {
					s, err := m.newSession()
					if err == nil {
						m.mu.Lock()
						m.session = s
						m.mu.Unlock()
						break
					}
					log.Warn("cannot start an etcd session; retrying", "err", err)
					m.sleep(time.Second)
				}
				break watching
			case <-m.ctx.Done():
				break watching
			}
		}
		cancelWatch()
	}
}

func (m *Manager) sleep(d time.Duration) {
	select {
	case <-time.After(d):
	case <-m.ctx.Done():
	}
}

// rescan reads every job and starts those this migrator should run. It
// returns the revision the listing started at.
func (m *Manager) rescan() (int64, error) {
	store := m.env.Store
	resp, err := store.Client().Get(m.ctx, store.JobsPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	jobs, err := store.List(m.ctx)
	if err != nil {
		return 0, err
	}
	// Oldest first: jobs run in the order they were started.
	for i := len(jobs) - 1; i >= 0; i-- {
		m.consider(jobs[i])
	}
	return resp.Header.Revision, nil
}

func (m *Manager) event(ev *clientv3.Event) {
	id, rest, ok := m.env.Store.SplitKey(string(ev.Kv.Key))
	if !ok {
		return
	}
	m.notify(id)
	switch {
	case rest == "" && ev.Type == mvccpb.DELETE:
		m.stop(id)
	case rest == "":
		j, err := decodeJob(ev.Kv.Value)
		if err != nil {
			m.env.Logger.Warn("undecodable job", "key", string(ev.Kv.Key), "err", err)
			return
		}
		m.consider(j)
	case strings.HasPrefix(rest, "claims/") && ev.Type == mvccpb.DELETE:
		// A claim went away (a migrator finished a file, or died): a
		// waiting verify or a full migrator may now have work.
		m.Wake()
	}
}

// consider starts or stops this migrator's run of job j.
func (m *Manager) consider(j *migratorv1.Job) {
	id := j.GetId()
	if Terminal(j.GetState()) {
		m.stop(id)
		return
	}
	kind := j.GetKind()
	var run func(context.Context, *migratorv1.Job, clientv3.LeaseID) error
	switch kind {
	case migratorv1.JobKind_JOB_KIND_IMPORT:
		run = m.env.RunImport
	case migratorv1.JobKind_JOB_KIND_VERIFY:
		run = m.env.RunVerify
	case migratorv1.JobKind_JOB_KIND_STREAM:
		run = m.env.RunStream
	default:
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.runs[id]; ok || len(m.runs) >= m.opts.MaxConcurrentJobs || m.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(m.ctx)
	r := &jobRun{cancel: cancel, done: make(chan struct{})}
	m.runs[id] = r
	lease := m.session.Lease()
	go func() {
		defer close(r.done)
		err := run(ctx, j, lease)
		if err != nil && !errors.Is(err, context.Canceled) {
			m.env.Logger.Warn("job run stopped; it will be picked up again", "job", id, "err", err)
		}
		cancel()
		m.mu.Lock()
		if m.runs[id] == r {
			delete(m.runs, id)
		}
		m.mu.Unlock()
		m.notify(id)
		if err != nil {
			m.sleep(time.Second)
		}
		m.Wake()
	}()
}

// stop cancels this migrator's run of a job, if any.
func (m *Manager) stop(id string) {
	m.mu.Lock()
	r := m.runs[id]
	m.mu.Unlock()
	if r != nil {
		r.cancel()
	}
}

// stopAll cancels every run and waits for them.
func (m *Manager) stopAll() {
	m.mu.Lock()
	runs := make([]*jobRun, 0, len(m.runs))
	for _, r := range m.runs {
		r.cancel()
		runs = append(runs, r)
	}
	m.mu.Unlock()
	for _, r := range runs {
		<-r.done
	}
}
