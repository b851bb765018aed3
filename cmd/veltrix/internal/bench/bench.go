package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Options configure a bench run. Zero values take the defaults.
type Options struct {
	// Workloads are the workload names to run (Workloads,
	// DynamoDBWorkloads, ImportWorkload, MigratorImportWorkload,
	// MigrationPhasesWorkload). Default: all but MigrationPhasesWorkload.
	Workloads []string
	// Peers are the peer names to run. Default: all.
	Peers []string
	// Keys is the number of keys loaded into every peer. Default 100000.
	Keys uint64
	// ValueSize is the value size in bytes. Default 1024.
	ValueSize int
	// Concurrency is the number of client goroutines. Default 32.
	Concurrency int
	// Duration is the measured time of each workload on each peer.
	// Default 10s.
	Duration time.Duration
	// Warmup runs each workload unmeasured first. Default: Duration/5, at
	// most 1s; negative: none.
	Warmup time.Duration
	// Distribution picks keys. Default Zipfian.
	Distribution Distribution
	// Rate, when > 0, runs every workload open loop at this many
	// operations per second. Default 0: closed loop.
	Rate float64
	// Sync makes every peer acknowledge writes only once they are on disk
	// (as far as the peer can). Set it explicitly; the CLI defaults it on.
	Sync bool
	// Seed makes key and operation choices repeatable. Default 1.
	Seed uint64
	// Dir is where peers keep their data (a temporary directory inside it
	// is removed at the end). Default: os.TempDir().
	Dir string
	// ImportItems is the size of the generated export. Default 200000.
	ImportItems int
	// ImportItemBytes is the size of one exported item. Default 1024.
	ImportItemBytes int
	// ImportWorkers and ImportBatch shape the import (ImportOptions).
	ImportWorkers, ImportBatch int
	// ImportNodes are the storage node counts MigratorImportWorkload runs
	// on (RF min(n, 3)). Default 1, 2, 3.
	ImportNodes []int
	// Rounds is how many times each workload runs on each peer, the peers
	// interleaved round by round; the report gives the median. Default 3.
	Rounds int
	// Settle bounds the wait after loading for the peers' background work
	// (compactions) to finish. Default 60s; negative: no wait.
	Settle time.Duration
	// NoTargets skips the extra runs the targets need (the open-loop GET
	// run at half the peak rate) and the targets table.
	NoTargets bool
	// RequirePeers makes a peer whose program is missing an error instead
	// of a skipped row (CI).
	RequirePeers bool
	// Command is the command line, printed with the report.
	Command string
	// Logger receives the servers' logs. Default: discarded.
	Logger *slog.Logger
	// Progress receives a line per step. Default: discarded.
	Progress io.Writer
	// BeforeWorkload and AfterWorkload, when set, are called around every
	// measured run (the CLI starts and stops CPU profiles there).
	BeforeWorkload, AfterWorkload func(peer, workload string)
}

// EnsureDefaults fills unset fields.
func (o *Options) EnsureDefaults() {
	if len(o.Workloads) == 0 {
		for _, w := range Workloads {
			o.Workloads = append(o.Workloads, w.Name)
		}
		for _, w := range DynamoDBWorkloads {
			o.Workloads = append(o.Workloads, w.Name)
		}
		o.Workloads = append(o.Workloads, ImportWorkload, MigratorImportWorkload)
	}
	if len(o.ImportNodes) == 0 {
		o.ImportNodes = []int{1, 2, 3}
	}
	if len(o.Peers) == 0 {
		for _, p := range Peers {
			o.Peers = append(o.Peers, p.Name)
		}
	}
	if o.Keys == 0 {
		o.Keys = 100000
	}
	if o.ValueSize == 0 {
		o.ValueSize = 1024
	}
	if o.Concurrency == 0 {
		o.Concurrency = 32
	}
	if o.Duration == 0 {
		o.Duration = 10 * time.Second
	}
	if o.Warmup == 0 {
		o.Warmup = min(o.Duration/5, time.Second)
	}
	if o.Distribution == "" {
		o.Distribution = Zipfian
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Rounds == 0 {
		o.Rounds = 3
	}
	if o.Settle == 0 {
		o.Settle = 60 * time.Second
	}
	if o.Dir == "" {
		o.Dir = os.TempDir()
	}
	if o.ImportItems == 0 {
		o.ImportItems = 200000
	}
	if o.ImportItemBytes == 0 {
		o.ImportItemBytes = 1024
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Validate reports every problem at once.
func (o *Options) Validate() error {
	var errs []error
	for _, w := range o.Workloads {
		if _, ok := WorkloadByName(w); !ok && !isDynamoDBWorkload(w) && !strings.EqualFold(w, ImportWorkload) && !strings.EqualFold(w, MigratorImportWorkload) &&
			!strings.EqualFold(w, MigrationPhasesWorkload) {
			errs = append(errs, fmt.Errorf("workload %q: want one of %s", w, strings.Join(workloadNames(), ", ")))
		}
	}
	for _, p := range o.Peers {
		if _, ok := PeerByName(p); !ok {
			errs = append(errs, fmt.Errorf("peer %q: want one of %s", p, strings.Join(peerNames(), ", ")))
		}
	}
	if o.ValueSize < 1 || o.ValueSize > 4<<20 {
		errs = append(errs, fmt.Errorf("value size %d: want 1 B to 4 MiB", o.ValueSize))
	}
	if o.Concurrency < 1 || o.Concurrency > 4096 {
		errs = append(errs, fmt.Errorf("concurrency %d: want 1 to 4096", o.Concurrency))
	}
	if o.Duration < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("duration %s: want at least 100ms", o.Duration))
	}
	if o.Rounds < 1 || o.Rounds > 100 {
		errs = append(errs, fmt.Errorf("rounds %d: want 1 to 100", o.Rounds))
	}
	if o.Rate < 0 {
		errs = append(errs, fmt.Errorf("rate %g: want 0 (closed loop) or a positive rate", o.Rate))
	}
	if _, err := ParseDistribution(string(o.Distribution)); err != nil {
		errs = append(errs, err)
	}
	if o.ImportItems < 1 || o.ImportItemBytes < 64 {
		errs = append(errs, fmt.Errorf("import: %d items of %d B: want at least 1 item of 64 B", o.ImportItems, o.ImportItemBytes))
	}
	for _, n := range o.ImportNodes {
		if n < 1 || n > 16 {
			errs = append(errs, fmt.Errorf("import nodes %d: want 1 to 16", n))
		}
	}
	return errors.Join(errs...)
}

func workloadNames() []string {
	var n []string
	for _, w := range Workloads {
		n = append(n, w.Name)
	}
	for _, w := range DynamoDBWorkloads {
		n = append(n, w.Name)
	}
	return append(n, ImportWorkload, MigratorImportWorkload, MigrationPhasesWorkload)
}

func peerNames() []string {
	var n []string
	for _, p := range Peers {
		n = append(n, p.Name)
	}
	return n
}

func (o *Options) wants(workload string) bool {
	for _, w := range o.Workloads {
		if strings.EqualFold(w, workload) {
			return true
		}
	}
	return false
}

func (o *Options) progress(format string, args ...any) {
	fmt.Fprintf(o.Progress, "bench: "+format+"\n", args...)
}

// Run runs every selected workload against every selected peer and returns
// the report.
//
// Every peer is started and loaded first and keeps its data for the whole
// run; Run then waits for the background work loading left behind
// (compactions) to finish. Each workload then runs Rounds times, the peers
// interleaved within each round (round 1: A B C, round 2: A B C, …), so a
// busy moment of a shared machine lands on one round of several peers
// rather than on every round of one; the report gives each workload×peer
// the median of its rounds and their spread. The bulk import runs last,
// once per peer, on a fresh cluster after every other peer has stopped.
func Run(ctx context.Context, o Options) (_ *Report, err error) {
	o.EnsureDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	rep := &Report{
		Command: o.Command, Started: time.Now().UTC(),
		Machine: Machine{
			CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(),
			OS: runtime.GOOS + "/" + runtime.GOARCH, LoadBefore: loadAvg(),
		},
		Settings: Settings{
			Keys: o.Keys, ValueSize: o.ValueSize, Concurrency: o.Concurrency, Duration: Seconds(o.Duration),
			Warmup: Seconds(max(o.Warmup, 0)), Distribution: o.Distribution, Rate: o.Rate, Sync: o.Sync,
			Rounds: o.Rounds,
		},
	}
	root, err := mkdirTemp(o.Dir, "veltrix-bench")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(root)
	values := NewValueSource(o.ValueSize, o.Seed)

	var export *Export
	if o.wants(ImportWorkload) && o.anyImportPeer() || o.wants(MigratorImportWorkload) {
		o.progress("generating an export of %d items of %d B", o.ImportItems, o.ImportItemBytes)
		if export, err = GenerateExport(root+"/export", o.ImportItems, o.ImportItemBytes, 2*runtime.NumCPU(), o.Seed); err != nil {
			return nil, fmt.Errorf("bench: generate export: %w", err)
		}
		res, err := Import(ctx, export, nil, o.importOptions())
		if err != nil {
			return nil, fmt.Errorf("bench: decode export: %w", err)
		}
		rep.Notes = append(rep.Notes, fmt.Sprintf("reading and decoding the export alone (no writes): %s items/s, %.0f MB/s of items, on the same cores",
			fmtRate(res.ItemsPerSec()), res.MBPerSec()))
	}

	start := time.Now()
	insts := map[string]*instance{}
	defer func() {
		if cerr := o.closeInstances(insts); cerr != nil && err == nil {
			err = cerr
		}
	}()
	var runs []*peerRun
	for _, p := range o.orderedPeers() {
		pr, err := o.prepare(ctx, rep, p, root, values, export, insts)
		if err != nil {
			return nil, err
		}
		if pr != nil {
			runs = append(runs, pr)
		}
	}
	idle := o.settle(ctx, rep, insts)
	if err := o.runRounds(ctx, rep, runs, values, idle); err != nil {
		return nil, err
	}
	// The import's fresh clusters do not share the machine with the others.
	if err := o.closeInstances(insts); err != nil {
		return nil, err
	}
	for _, pr := range runs {
		if export == nil || !o.wants(ImportWorkload) || !pr.peer.Import || pr.peer.base != "" {
			continue
		}
		if err := o.runImport(ctx, rep, pr.peer, root, export); err != nil {
			return nil, err
		}
	}
	if o.wants(MigrationPhasesWorkload) {
		if err := o.runMigrationPhases(ctx, rep, root, values); err != nil {
			return nil, err
		}
	}
	if export != nil && o.wants(MigratorImportWorkload) {
		if err := o.runMigratorImports(ctx, rep, root, export); err != nil {
			return nil, err
		}
	}
	rep.Elapsed = Seconds(time.Since(start))
	rep.Machine.LoadAfter = loadAvg()
	if !o.NoTargets {
		rep.ComputeTargets()
	}
	for _, p := range rep.Peers {
		if pp, _ := PeerByName(p.Name); pp.DynamoDB && p.Skipped == "" {
			rep.Notes = append(rep.Notes, p.Name+" runs in its own Node.js process; the DynamoDB workloads send GetItem/PutItem over HTTP with the AWS SDK for Go v2 (no retries), on a table with a binary hash key")
		}
	}
	rep.Notes = append(rep.Notes,
		fmt.Sprintf("every peer runs on this machine and keeps its data across the %d rounds; one runs at a time while the others idle. Veltrix, etcd and Pebble run inside the bench process (sharing its CPUs and Go runtime with the clients), redis-server and dynalite in their own processes, whose CPU time is counted in CPU µs/op", o.Rounds),
		"figures are the median of the rounds; ± is half the min–max range of the rounds as a share of the median",
		"ops/s counts calls: a BATCHGET call reads "+fmt.Sprint(BatchKeys)+" keys (KEYS/S); redis-pipelined counts each pipelined command")
	return rep, nil
}

// instance is one started peer (a base peer: variants share it) and its
// loaded data.
type instance struct {
	peer Peer
	dir  string
	d    Driver
	// dd is the router's DynamoDB endpoint, loaded, when a DynamoDB
	// workload runs on this Veltrix peer.
	dd                   *dynamoDriver
	loadTook             time.Duration
	skipped              error // ErrMissing: the peer is not installed
	inserted, ddInserted atomic.Uint64
	onlyRMW              bool // the DynamoDB table was switched to only_rmw_uses_lwt
	closed               bool
}

// peerRun is one selected peer ready to run: its driver and its workloads.
type peerRun struct {
	peer Peer
	inst *instance // nil: the peer runs only the import
	d    Driver
	// workloads run on d; dynamo run on the instance's DynamoDB endpoint.
	workloads, dynamo []Workload
}

// runs reports whether the peer runs workload w, and on which driver.
func (pr *peerRun) runs(w string) (Driver, *atomic.Uint64, bool) {
	if pr.inst == nil {
		return nil, nil, false
	}
	for _, x := range pr.workloads {
		if x.Name == w {
			return pr.d, &pr.inst.inserted, true
		}
	}
	for _, x := range pr.dynamo {
		if x.Name == w {
			return pr.inst.dd, &pr.inst.ddInserted, true
		}
	}
	return nil, nil, false
}

// peerWorkloads is what p runs: workloads on its own driver and, for a
// Veltrix peer, dynamo through its router's DynamoDB endpoint.
func (o *Options) peerWorkloads(p Peer) (workloads, dynamo []Workload) {
	workloads, dynamo = o.orderedWorkloads(), o.orderedDynamoDBWorkloads()
	switch {
	case p.DynamoDB:
		// A DynamoDB peer runs only the DynamoDB workloads, as its own
		// (not the Veltrix write isolation one).
		return slices.DeleteFunc(dynamo, func(w Workload) bool { return w.Name == PutItemOnlyRMW }), nil
	case p.base != "":
		// A variant reads differently: only the workloads that read.
		return slices.DeleteFunc(workloads, func(w Workload) bool { return w.Read == 0 && w.Batch == 0 }), nil
	case p.RF == 0:
		return workloads, nil
	}
	return workloads, dynamo
}

// prepare starts (or finds) p's instance and loads it; nil when p runs
// nothing or is skipped.
func (o *Options) prepare(ctx context.Context, rep *Report, p Peer, root string, values *ValueSource, export *Export, insts map[string]*instance) (*peerRun, error) {
	info := PeerInfo{Name: p.Name, Description: p.Description, Durability: p.Durability(o.Sync), Consistency: p.Consistency, Shares: p.base}
	workloads, dynamo := o.peerWorkloads(p)
	if len(workloads) == 0 && len(dynamo) == 0 {
		if export != nil && p.Import {
			rep.Peers = append(rep.Peers, info)
			return &peerRun{peer: p}, nil
		}
		return nil, nil
	}
	baseName := p.Name
	if p.base != "" {
		baseName = p.base
	}
	inst, err := o.instance(ctx, baseName, root, values, insts)
	if err != nil {
		return nil, err
	}
	if inst.skipped != nil {
		info.Skipped = inst.skipped.Error()
		rep.Peers = append(rep.Peers, info)
		rep.Notes = append(rep.Notes, fmt.Sprintf("%s skipped: %v", p.Name, inst.skipped))
		return nil, nil
	}
	if p.base == "" && inst.loadTook > 0 {
		info.LoadSeconds, info.LoadKeysSec = Seconds(inst.loadTook), perSec(o.Keys, inst.loadTook)
	}
	pr := &peerRun{peer: p, inst: inst, d: inst.d, workloads: workloads, dynamo: dynamo}
	if p.variant != nil {
		pr.d = p.variant(inst.d)
	}
	if len(dynamo) > 0 && inst.dd == nil {
		vd, ok := inst.d.(*veltrixDriver)
		if !ok {
			return nil, fmt.Errorf("bench: %s has no DynamoDB endpoint", p.Name)
		}
		if inst.dd, err = vd.dynamo(ctx, o.Concurrency); err != nil {
			return nil, err
		}
		o.progress("%s: loading %d keys through the DynamoDB endpoint", p.Name, o.Keys)
		if _, err := Load(ctx, inst.dd, LoadOptions{Keys: o.Keys, Concurrency: min(o.Concurrency, 16), Seed: o.Seed}, values); err != nil {
			return nil, fmt.Errorf("bench: load %s through the DynamoDB endpoint: %w", p.Name, err)
		}
	}
	rep.Peers = append(rep.Peers, info)
	return pr, nil
}

// instance starts the base peer name and loads its keys, once.
func (o *Options) instance(ctx context.Context, name, root string, values *ValueSource, insts map[string]*instance) (*instance, error) {
	if inst := insts[name]; inst != nil {
		return inst, nil
	}
	p, _ := PeerByName(name)
	dir, err := mkdirTemp(root, p.Name)
	if err != nil {
		return nil, err
	}
	inst := &instance{peer: p, dir: dir}
	o.progress("%s: starting", p.Name)
	inst.d, err = p.start(ctx, dir, o)
	if errors.Is(err, ErrMissing) && !o.RequirePeers {
		inst.skipped, inst.closed = err, true
		insts[name] = inst
		return inst, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", p.Name, err)
	}
	insts[name] = inst
	workloads, _ := o.peerWorkloads(p)
	if len(workloads) > 0 {
		o.progress("%s: loading %d keys", p.Name, o.Keys)
		took, err := Load(ctx, inst.d, LoadOptions{Keys: o.Keys, Concurrency: min(o.Concurrency, 16), Seed: o.Seed}, values)
		if err != nil {
			return nil, fmt.Errorf("bench: load %s: %w", p.Name, err)
		}
		inst.loadTook = took
	}
	return inst, nil
}

// closeInstances stops every started instance not yet stopped.
func (o *Options) closeInstances(insts map[string]*instance) error {
	var errs []error
	for _, p := range Peers {
		inst := insts[p.Name]
		if inst == nil || inst.closed {
			continue
		}
		inst.closed = true
		o.progress("%s: stopping", p.Name)
		if inst.dd != nil {
			if err := inst.dd.Close(); err != nil {
				errs = append(errs, fmt.Errorf("bench: stop %s's DynamoDB client: %w", p.Name, err))
			}
		}
		if err := inst.d.Close(); err != nil {
			errs = append(errs, fmt.Errorf("bench: stop %s: %w", p.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Settling after the load: the processes of the system under test must use
// less than settleIdle of a core over a settleWindow, for at most
// Options.Settle.
const (
	settleIdle   = 0.10
	settleWindow = time.Second
)

// systemCPU is the CPU time used so far by this process and every
// out-of-process server started.
func systemCPU(insts map[string]*instance) time.Duration {
	c := selfCPU()
	for _, inst := range insts {
		if inst.closed {
			continue
		}
		if e, ok := inst.d.(ExternalCPU); ok {
			c += e.ServerCPU()
		}
	}
	return c
}

// settle waits for the background work loading left (Pebble's and etcd's
// compactions, Redis's AOF) to finish, so it does not land in the first
// workload, and returns the bench process's CPU use (cores) with every
// peer idle, measured once settled: RunWorkload takes it off each run's CPU
// time, so a peer is not charged for the others' heartbeats. It returns 0
// when the system did not settle within Options.Settle.
func (o *Options) settle(ctx context.Context, rep *Report, insts map[string]*instance) float64 {
	if o.Settle < 0 || len(insts) == 0 {
		return 0
	}
	o.progress("waiting for background work after loading (at most %s)", o.Settle)
	start := time.Now()
	for time.Since(start) < o.Settle && ctx.Err() == nil {
		c0, s0, t0 := systemCPU(insts), selfCPU(), time.Now()
		sleep(ctx, settleWindow)
		el := time.Since(t0)
		used := float64(systemCPU(insts)-c0) / float64(el)
		if used < settleIdle {
			idle := float64(selfCPU()-s0) / float64(el)
			rep.SettledAfter = Seconds(time.Since(start))
			rep.IdleCPU = idle
			rep.Notes = append(rep.Notes, fmt.Sprintf("after loading, waited %.1fs until the system under test used under %.0f%% of a core (compactions done); with every peer idle the bench process then used %.1f%% of a core, taken off each run's CPU time",
				time.Since(start).Seconds(), settleIdle*100, idle*100))
			return idle
		}
	}
	rep.SettledAfter = Seconds(time.Since(start))
	rep.Notes = append(rep.Notes, fmt.Sprintf("after loading, the system under test still used over %.0f%% of a core after %s: background work may overlap the first rounds (the warm-up runs first)", settleIdle*100, o.Settle))
	return 0
}

// step is one measured run: a workload on a peer in a round (1-based).
type step struct {
	Workload, Peer string
	Round          int
}

// plan orders the measured runs: workload after workload; within a
// workload, round after round; within a round, every peer that runs the
// workload, in peers' order.
func plan(workloads, peers []string, runs func(peer, workload string) bool, rounds int) []step {
	var out []step
	for _, w := range workloads {
		for r := 1; r <= rounds; r++ {
			for _, p := range peers {
				if runs(p, w) {
					out = append(out, step{Workload: w, Peer: p, Round: r})
				}
			}
		}
	}
	return out
}

// runRounds runs the plan and fills rep.Results with the median of each
// workload×peer's rounds.
func (o *Options) runRounds(ctx context.Context, rep *Report, runs []*peerRun, values *ValueSource, idle float64) error {
	var workloads, peers []string
	byName := map[string]*peerRun{}
	for _, w := range o.orderedWorkloads() {
		workloads = append(workloads, w.Name)
	}
	for _, w := range o.orderedDynamoDBWorkloads() {
		workloads = append(workloads, w.Name)
	}
	for _, pr := range runs {
		peers = append(peers, pr.peer.Name)
		byName[pr.peer.Name] = pr
	}
	type key struct{ peer, workload, note string }
	rounds := map[key][]Result{}
	var order []key
	add := func(res Result) {
		k := key{res.Peer, res.Workload, res.Note}
		if _, ok := rounds[k]; !ok {
			order = append(order, k)
		}
		rounds[k] = append(rounds[k], res)
	}
	steps := plan(workloads, peers, func(p, w string) bool { _, _, ok := byName[p].runs(w); return ok }, o.Rounds)
	for _, st := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		pr := byName[st.Peer]
		d, inserted, _ := pr.runs(st.Workload)
		w, ok := WorkloadByName(st.Workload)
		if !ok {
			w, _ = dynamoDBWorkload(st.Workload)
		}
		if w.Name == PutItemOnlyRMW && !pr.inst.onlyRMW {
			vd, ok := pr.inst.d.(*veltrixDriver)
			if !ok {
				return fmt.Errorf("bench: %s has no DynamoDB endpoint", pr.peer.Name)
			}
			if err := vd.onlyRMW(ctx); err != nil {
				return err
			}
			pr.inst.onlyRMW = true
		}
		ro := RunOptions{
			Workload: w, Keys: o.Keys, ValueSize: o.ValueSize, Concurrency: o.Concurrency, Duration: o.Duration,
			Rate: o.Rate, Distribution: o.Distribution, Seed: o.Seed + uint64(st.Round-1)*7919, Inserted: inserted, IdleCPU: idle,
		}
		if o.Warmup > 0 {
			wo := ro
			wo.Duration, wo.Seed = o.Warmup, ro.Seed+1000
			if _, err := RunWorkload(ctx, d, wo, values); err != nil {
				return err
			}
		}
		o.progress("%s: workload %s, round %d of %d", pr.peer.Name, w.Name, st.Round, o.Rounds)
		if o.BeforeWorkload != nil {
			o.BeforeWorkload(pr.peer.Name, w.Name)
		}
		m, err := RunWorkload(ctx, d, ro, values)
		if o.AfterWorkload != nil {
			o.AfterWorkload(pr.peer.Name, w.Name)
		}
		if err != nil {
			return err
		}
		res := ResultOf(pr.peer.Name, w.Name, m)
		res.Round, res.Consistency = st.Round, pr.peer.Consistency
		add(res)

		// The GET P99 target is measured at half of the peak just found,
		// on Veltrix and on etcd-1 (its reference).
		if !o.NoTargets && w.Name == "C" && o.Rate == 0 && (pr.peer.RF > 0 || pr.peer.Name == "etcd-1") && pr.peer.base == "" && res.OpsPerSec > 0 {
			half := ro
			half.Rate = res.OpsPerSec / 2
			o.progress("%s: workload C open loop at %s ops/s, round %d", pr.peer.Name, fmtRate(half.Rate), st.Round)
			hm, err := RunWorkload(ctx, d, half, values)
			if err != nil {
				return err
			}
			hr := ResultOf(pr.peer.Name, w.Name, hm)
			hr.Note, hr.Round, hr.Consistency = HalfPeakNote, st.Round, pr.peer.Consistency
			add(hr)
		}
		if w.Batch > 0 && st.Round == 1 {
			if rd := redisOf(d); rd != nil && rd.pipelined && rep.RedisBenchmark == nil {
				if err := o.redisBenchmark(ctx, rep, rd, values); err != nil {
					rep.Notes = append(rep.Notes, "redis-benchmark did not run: "+err.Error())
				}
			}
		}
	}
	for _, k := range order {
		rep.Results = append(rep.Results, Aggregate(rounds[k]))
	}
	return nil
}

// runImport imports the export into a fresh cluster of peer p and adds the
// row.
func (o *Options) runImport(ctx context.Context, rep *Report, p Peer, root string, export *Export) error {
	dir, err := mkdirTemp(root, p.Name+"-import")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	res, err := o.importInto(ctx, p, func() error { return nil }, dir, export)
	if err != nil {
		return err
	}
	perCore := res.ItemsPerSec() / float64(runtime.NumCPU())
	imo := o.importOptions()
	imo.EnsureDefaults()
	rep.Imports = append(rep.Imports, ImportRow{
		Peer: p.Name, Items: res.Items, ItemBytes: export.ItemBytes, Seconds: Seconds(res.Elapsed),
		ItemsPerSec: res.ItemsPerSec(), MBPerSec: res.MBPerSec(), ItemsPerSecCPU: perCore,
		VsClaim: perCore / ClaimItemsPerVCPU,
		Method: fmt.Sprintf("generated DYNAMODB_JSON export (gzip, %d files) decoded with pkg/ddb and written with pkg/client BatchWrite, "+
			"%d items per call, %d writers, export-time versions, as the migrator does", len(export.Files), imo.Batch, imo.Workers),
	})
	return nil
}

func (o *Options) anyImportPeer() bool {
	for _, pn := range o.Peers {
		if p, _ := PeerByName(pn); p.Import {
			return true
		}
	}
	return false
}

func (o *Options) importOptions() ImportOptions {
	return ImportOptions{Table: "import", Workers: o.ImportWorkers, Batch: o.ImportBatch}
}

// orderedPeers is the selected peers in Peers order.
func (o *Options) orderedPeers() []Peer {
	var out []Peer
	for _, p := range Peers {
		for _, n := range o.Peers {
			if strings.EqualFold(n, p.Name) {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// orderedDynamoDBWorkloads is the selected DynamoDB workloads in
// DynamoDBWorkloads order.
func (o *Options) orderedDynamoDBWorkloads() []Workload {
	var out []Workload
	for _, w := range DynamoDBWorkloads {
		if o.wants(w.Name) {
			out = append(out, w)
		}
	}
	return out
}

// wantsDynamoDB reports whether a DynamoDB workload is selected, so the
// Veltrix peers start their router's DynamoDB endpoint.
func (o *Options) wantsDynamoDB() bool { return len(o.orderedDynamoDBWorkloads()) > 0 }

// orderedWorkloads is the selected workloads in Workloads order.
func (o *Options) orderedWorkloads() []Workload {
	var out []Workload
	for _, w := range Workloads {
		if o.wants(w.Name) {
			out = append(out, w)
		}
	}
	return out
}

// importInto imports the export into a fresh cluster of peer p, as a
// migration fills a new cluster: the workloads' data and compactions do
// not weigh on it. The workloads' cluster is stopped first (stop) so the two
// never share the machine.
func (o *Options) importInto(ctx context.Context, p Peer, stop func() error, dir string, export *Export) (ImportResult, error) {
	if err := stop(); err != nil {
		return ImportResult{}, err
	}
	o.progress("%s: starting a fresh cluster for the import", p.Name)
	fresh, err := p.start(ctx, dir+"/import", o)
	if err != nil {
		return ImportResult{}, fmt.Errorf("bench: start %s for the import: %w", p.Name, err)
	}
	defer fresh.Close()
	vd, ok := fresh.(*veltrixDriver)
	if !ok {
		return ImportResult{}, fmt.Errorf("bench: %s cannot import", p.Name)
	}
	if _, err := vd.c.CreateTable(ctx, "import"); err != nil {
		return ImportResult{}, err
	}
	o.progress("%s: importing %d items", p.Name, export.Items)
	if o.BeforeWorkload != nil {
		o.BeforeWorkload(p.Name, ImportWorkload)
	}
	res, err := Import(ctx, export, vd.c, o.importOptions())
	if o.AfterWorkload != nil {
		o.AfterWorkload(p.Name, ImportWorkload)
	}
	if err != nil {
		return res, fmt.Errorf("bench: import into %s: %w", p.Name, err)
	}
	return res, nil
}

// redisBenchmark runs redis-benchmark's pipelined GET at the bench's
// concurrency against the pipelined Redis peer, on keys of the same size.
func (o *Options) redisBenchmark(ctx context.Context, rep *Report, rd *redisDriver, values *ValueSource) error {
	if err := rd.loadRedisBenchmarkKeys(ctx, o.Keys, values); err != nil {
		return err
	}
	// About Duration at the rate redis-benchmark reaches here.
	requests := int(max(o.Duration.Seconds(), 1) * 400000)
	o.progress("redis-pipelined: redis-benchmark -P %d -t get -n %d -c %d", BatchKeys, requests, o.Concurrency)
	res, args, err := rd.runRedisBenchmark(ctx, requests, o.Concurrency, BatchKeys, o.Keys, o.ValueSize)
	if err != nil {
		return err
	}
	rep.RedisBenchmark = &RedisBenchmarkRow{
		Command: RedisBenchmarkBin + " " + strings.Join(args, " "), RPS: res.RPS, P50Ms: res.P50, P99Ms: res.P99,
		Concurrency: o.Concurrency, Pipeline: BatchKeys,
	}
	return nil
}

func redisOf(d Driver) *redisDriver {
	switch r := d.(type) {
	case *redisDriver:
		return r
	case pipelinedRedis:
		return r.redisDriver
	}
	return nil
}

// EnsureDefaults fills unset import options.
func (o *ImportOptions) EnsureDefaults() {
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Batch <= 0 {
		o.Batch = 500
	}
}

// loadAvg returns /proc/loadavg's three load averages, or "".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
