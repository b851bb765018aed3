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
	// Workloads are the workload names to run (Workloads, plus
	// ImportWorkload). Default: all.
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
		o.Workloads = append(o.Workloads, ImportWorkload)
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
		if _, ok := WorkloadByName(w); !ok && !isDynamoDBWorkload(w) && !strings.EqualFold(w, ImportWorkload) {
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
	if o.Rate < 0 {
		errs = append(errs, fmt.Errorf("rate %g: want 0 (closed loop) or a positive rate", o.Rate))
	}
	if _, err := ParseDistribution(string(o.Distribution)); err != nil {
		errs = append(errs, err)
	}
	if o.ImportItems < 1 || o.ImportItemBytes < 64 {
		errs = append(errs, fmt.Errorf("import: %d items of %d B: want at least 1 item of 64 B", o.ImportItems, o.ImportItemBytes))
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
	return append(n, ImportWorkload)
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

// Run runs every selected workload against every selected peer, one peer
// at a time (each started fresh, loaded, measured and stopped before the
// next starts, so they never share the machine), and returns the report.
func Run(ctx context.Context, o Options) (*Report, error) {
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
		},
	}
	root, err := mkdirTemp(o.Dir, "veltrix-bench")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(root)
	values := NewValueSource(o.ValueSize, o.Seed)

	var export *Export
	if o.wants(ImportWorkload) && o.anyImportPeer() {
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
	for _, pn := range o.orderedPeers() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := o.runPeer(ctx, rep, pn, root, values, export); err != nil {
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
		"every peer runs on this machine, one at a time; Veltrix, etcd and Pebble run inside the bench process (sharing its CPUs and Go runtime with the clients), redis-server in its own process",
		"ops/s counts calls: a BATCHGET call reads "+fmt.Sprint(BatchKeys)+" keys (KEYS/S); redis-pipelined counts each pipelined command")
	return rep, nil
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

func (o *Options) runPeer(ctx context.Context, rep *Report, p Peer, root string, values *ValueSource, export *Export) (err error) {
	info := PeerInfo{Name: p.Name, Description: p.Description, Durability: p.Durability(o.Sync)}
	workloads := o.orderedWorkloads()
	dynamoWorkloads := o.orderedDynamoDBWorkloads()
	if p.DynamoDB {
		// A DynamoDB peer runs only the DynamoDB workloads, as its own
		// (not the Veltrix write isolation one).
		workloads, dynamoWorkloads = slices.DeleteFunc(dynamoWorkloads, func(w Workload) bool { return w.Name == PutItemOnlyRMW }), nil
	} else if p.RF == 0 {
		dynamoWorkloads = nil
	}
	doImport := export != nil && p.Import
	if len(workloads) == 0 && len(dynamoWorkloads) == 0 && !doImport {
		return nil
	}
	dir, err := mkdirTemp(root, p.Name)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	o.progress("%s: starting", p.Name)
	d, err := p.start(ctx, dir, o)
	if errors.Is(err, ErrMissing) && !o.RequirePeers {
		info.Skipped = err.Error()
		rep.Peers = append(rep.Peers, info)
		rep.Notes = append(rep.Notes, fmt.Sprintf("%s skipped: %v", p.Name, err))
		return nil
	}
	if err != nil {
		return fmt.Errorf("bench: start %s: %w", p.Name, err)
	}
	closed := false
	stop := func() error {
		if closed {
			return nil
		}
		closed = true
		o.progress("%s: stopping", p.Name)
		if err := d.Close(); err != nil {
			return fmt.Errorf("bench: stop %s: %w", p.Name, err)
		}
		return nil
	}
	defer func() {
		if cerr := stop(); cerr != nil && err == nil {
			err = cerr
		}
	}()

	if len(workloads) > 0 {
		o.progress("%s: loading %d keys", p.Name, o.Keys)
		took, err := Load(ctx, d, LoadOptions{Keys: o.Keys, Concurrency: min(o.Concurrency, 16), Seed: o.Seed}, values)
		if err != nil {
			return fmt.Errorf("bench: load %s: %w", p.Name, err)
		}
		info.LoadSeconds, info.LoadKeysSec = Seconds(took), perSec(o.Keys, took)
	}
	rep.Peers = append(rep.Peers, info)

	var inserted atomic.Uint64
	runOne := func(d Driver, w Workload) (*Measurement, error) {
		ro := RunOptions{
			Workload: w, Keys: o.Keys, ValueSize: o.ValueSize, Concurrency: o.Concurrency, Duration: o.Duration,
			Rate: o.Rate, Distribution: o.Distribution, Seed: o.Seed, Inserted: &inserted,
		}
		if o.Warmup > 0 {
			wo := ro
			wo.Duration, wo.Seed = o.Warmup, o.Seed+1000
			if _, err := RunWorkload(ctx, d, wo, values); err != nil {
				return nil, err
			}
		}
		o.progress("%s: workload %s", p.Name, w.Name)
		if o.BeforeWorkload != nil {
			o.BeforeWorkload(p.Name, w.Name)
		}
		m, err := RunWorkload(ctx, d, ro, values)
		if o.AfterWorkload != nil {
			o.AfterWorkload(p.Name, w.Name)
		}
		return m, err
	}
	for _, w := range workloads {
		if _, dyn := dynamoDBWorkload(w.Name); dyn {
			m, err := runOne(d, w)
			if err != nil {
				return err
			}
			rep.Results = append(rep.Results, ResultOf(p.Name, w.Name, m))
			continue
		}
		ro := RunOptions{
			Workload: w, Keys: o.Keys, ValueSize: o.ValueSize, Concurrency: o.Concurrency, Duration: o.Duration,
			Rate: o.Rate, Distribution: o.Distribution, Seed: o.Seed, Inserted: &inserted,
		}
		if o.Warmup > 0 {
			wo := ro
			wo.Duration, wo.Seed = o.Warmup, o.Seed+1000
			if _, err := RunWorkload(ctx, d, wo, values); err != nil {
				return err
			}
		}
		o.progress("%s: workload %s", p.Name, w.Name)
		if o.BeforeWorkload != nil {
			o.BeforeWorkload(p.Name, w.Name)
		}
		m, err := RunWorkload(ctx, d, ro, values)
		if o.AfterWorkload != nil {
			o.AfterWorkload(p.Name, w.Name)
		}
		if err != nil {
			return err
		}
		res := ResultOf(p.Name, w.Name, m)
		rep.Results = append(rep.Results, res)

		// The GET P99 target is measured at half of the peak just found.
		if !o.NoTargets && w.Name == "C" && o.Rate == 0 && p.RF > 0 && res.OpsPerSec > 0 {
			half := ro
			half.Rate = res.OpsPerSec / 2
			o.progress("%s: workload C open loop at %s ops/s", p.Name, fmtRate(half.Rate))
			hm, err := RunWorkload(ctx, d, half, values)
			if err != nil {
				return err
			}
			hr := ResultOf(p.Name, w.Name, hm)
			hr.Note = HalfPeakNote
			rep.Results = append(rep.Results, hr)
		}

		if w.Batch > 0 {
			if rd := redisOf(d); rd != nil && rd.pipelined && rep.RedisBenchmark == nil {
				if err := o.redisBenchmark(ctx, rep, rd, values); err != nil {
					rep.Notes = append(rep.Notes, "redis-benchmark did not run: "+err.Error())
				}
			}
		}
	}

	// The DynamoDB workloads on the same cluster, through its router's
	// DynamoDB endpoint, on a table of their own loaded with the same keys.
	if len(dynamoWorkloads) > 0 {
		vd, ok := d.(*veltrixDriver)
		if !ok {
			return fmt.Errorf("bench: %s has no DynamoDB endpoint", p.Name)
		}
		dd, err := vd.dynamo(ctx, o.Concurrency)
		if err != nil {
			return err
		}
		defer dd.Close()
		o.progress("%s: loading %d keys through the DynamoDB endpoint", p.Name, o.Keys)
		if _, err := Load(ctx, dd, LoadOptions{Keys: o.Keys, Concurrency: min(o.Concurrency, 16), Seed: o.Seed}, values); err != nil {
			return fmt.Errorf("bench: load %s through the DynamoDB endpoint: %w", p.Name, err)
		}
		for _, w := range dynamoWorkloads {
			if w.Name == PutItemOnlyRMW {
				if err := vd.onlyRMW(ctx); err != nil {
					return err
				}
			}
			m, err := runOne(dd, w)
			if err != nil {
				return err
			}
			rep.Results = append(rep.Results, ResultOf(p.Name, w.Name, m))
		}
	}

	if doImport {
		res, err := o.importInto(ctx, p, stop, dir, export)
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
	}
	return nil
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
