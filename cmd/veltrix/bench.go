package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/veltrixdb/veltrix/cmd/veltrix/internal/bench"
)

func init() {
	register(command{name: "bench", build: benchCmd})
}

// benchFlags are veltrix bench's flags beyond bench.Options.
type benchFlags struct {
	o                        bench.Options
	workloads, peers         []string
	dist, output, cpuProfile string
	memProfile               string
	noTargets, verbose       bool
	// compare is the git revision to compare the working tree with.
	compare string
}

func benchCmd(c *conn) *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "benchmark Veltrix side by side with etcd, Redis and raw Pebble (YCSB A-D, batch get, bulk import)",
		Long: `Benchmark Veltrix side by side with etcd, Redis and raw Pebble.

Every peer is started and loaded once and keeps its data; after waiting for
the load's background work (compactions) to settle, each workload runs
--rounds times on every peer, the peers interleaved round by round
(A B C, A B C, …). The table gives per workload and peer the median of the
rounds and their spread (± half the min–max range) for ops/s, CPU µs/op
(every process of the system under test, clients included: the steadiest
figure on a shared machine) and P99, and labels each row with its read
consistency (Veltrix ONE or QUORUM, etcd linearizable or serializable).
-o json gives the medians and every round.

--compare REV builds veltrix at git revision REV (git archive + go build in a
temporary directory) and the working tree, then runs one round of each
build's 'veltrix bench' (with the other flags given) alternately,
--rounds times, and prints per workload both builds' medians and the ratio
working tree / REV.`,
		Example: `  veltrix bench --peers veltrix-rf1,etcd-1-serializable --workloads C,PUT --duration 2s --keys 20000
  veltrix bench --compare main --peers veltrix-rf1 --workloads C,PUT --duration 2s --keys 20000 --rounds 3`,
		Args: nargs(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			command := "veltrix " + strings.Join(c.args, " ")
			if f.compare != "" {
				return runCompare(cmd.Context(), cmd.OutOrStdout(), command, &f, passThroughFlags(cmd.LocalNonPersistentFlags()))
			}
			return runBench(cmd.Context(), cmd.OutOrStdout(), command, &f)
		},
	}
	o := &f.o
	fs := cmd.Flags()
	f.workloads = []string{"A", "B", "C", "D", "PUT", "BATCHGET", "GETITEM", "PUTITEM", "PUTITEM_ONLYRMW", "IMPORT", "IMPORT-MIGRATOR"}
	for _, p := range bench.Peers {
		f.peers = append(f.peers, p.Name)
	}
	fs.Var((*listValue)(&f.workloads), "workloads", "comma-separated workloads: A (50/50 read/update), B (95/5), C (read only), D (read latest, 5% inserts), PUT (update only), BATCHGET (16 keys per call), GETITEM and PUTITEM (C and PUT as GetItem/PutItem through the DynamoDB endpoint with the AWS SDK for Go v2), PUTITEM_ONLYRMW (PutItem with write isolation only_rmw_uses_lwt), IMPORT (bulk import through pkg/client), IMPORT-MIGRATOR (import jobs through the migrator by BATCH_WRITE and INGEST, on --import-nodes clusters), MIGRATION-PHASES (GetItem/PutItem latency in each migration phase vs dynalite, open loop at --rate or 200 ops/s; not in the default list)")
	fs.Var((*listValue)(&f.peers), "peers", "comma-separated peers: "+strings.Join(f.peers, ","))
	fs.Uint64Var(&o.Keys, "keys", 100000, "keys loaded into every peer before the workloads")
	fs.IntVar(&o.ValueSize, "value-size", 1024, "value size in bytes")
	fs.IntVar(&o.Concurrency, "concurrency", 32, "client goroutines (the same for every peer)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured time of each workload on each peer")
	fs.DurationVar(&o.Warmup, "warmup", 0, "unmeasured run before each workload (default: duration/5, at most 1s; negative: none)")
	fs.StringVar(&f.dist, "distribution", "zipfian", "key distribution: zipfian or uniform (D always reads the latest keys)")
	fs.Float64Var(&o.Rate, "rate", 0, "0: closed loop (peak throughput); N: open loop at N ops/s, latency measured from each operation's intended start")
	// Its own --output: the report is table or json, not yaml.
	fs.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	fs.BoolVar(&o.Sync, "sync", true, "peers acknowledge writes only once on disk: Veltrix WAL fsync, etcd fsync, Redis appendfsync always, Pebble Sync")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the key and operation choices")
	fs.StringVar(&o.Dir, "dir", "", "where peers keep their data while they run (default: the system temp dir)")
	fs.IntVar(&o.ImportItems, "import-items", 200000, "items in the generated export of the IMPORT workload")
	fs.IntVar(&o.ImportItemBytes, "import-item-bytes", 1024, "size of one exported item (its stored encoding)")
	fs.IntVar(&o.ImportWorkers, "import-workers", 8, "BatchWrite calls in flight during the import")
	fs.IntVar(&o.ImportBatch, "import-batch", 500, "mutations per BatchWrite during the import")
	fs.IntSliceVar(&o.ImportNodes, "import-nodes", []int{1, 2, 3}, "storage node counts of the migrator import (IMPORT-MIGRATOR), RF min(n, 3), by BATCH_WRITE and INGEST each")
	fs.IntVar(&o.Rounds, "rounds", 3, "measured runs of each workload on each peer, the peers interleaved round by round; the report gives the median and the spread")
	fs.DurationVar(&o.Settle, "settle", 60*time.Second, "longest wait after loading for the peers' background work (compactions) to finish; negative: no wait")
	fs.StringVar(&f.compare, "compare", "", "git revision (e.g. main) whose build is compared with the working tree's, interleaved round by round; prints both medians and the ratios")
	fs.BoolVar(&f.noTargets, "no-targets", false, "skip the extra runs for the issue #9 targets and the targets table")
	fs.StringVar(&f.memProfile, "memprofile", "", "write the allocations of every measured run to PREFIX-<peer>-<workload>-r<round>.pprof and the allocations before it to ….base.pprof (go tool pprof -sample_index=alloc_space -base BASE RUN)")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of every measured run to PREFIX-<peer>-<workload>-r<round>.pprof (clients and in-process servers)")
	fs.BoolVarP(&f.verbose, "v", "v", false, "print progress and the servers' warnings to stderr")
	return cmd
}

// runBench runs the benchmark bench.Options describes; command is how it
// was called, for the report.
func runBench(ctx context.Context, w io.Writer, command string, bf *benchFlags) error {
	o := bf.o
	if bf.output != "table" && bf.output != "json" {
		return usageErr("--output %q: want table or json", bf.output)
	}
	d, err := bench.ParseDistribution(bf.dist)
	if err != nil {
		return usageErr("--distribution: %v", err)
	}
	o.Distribution = d
	o.NoTargets = bf.noTargets
	o.Workloads, o.Peers = bf.workloads, bf.peers
	o.RequirePeers = benchInCI()
	o.Command = command
	o.Progress = os.Stderr
	o.Logger = slog.New(slog.DiscardHandler)
	if bf.verbose {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	} else if bf.output == "json" {
		o.Progress = io.Discard
	}
	if err := o.Validate(); err != nil {
		return usageErr("%v", err)
	}
	var profErr error
	if bf.cpuProfile != "" {
		var f *os.File
		runs := map[string]int{}
		o.BeforeWorkload = func(peer, workload string) {
			// One profile per round: PREFIX-<peer>-<workload>-r<round>.pprof.
			runs[peer+"/"+workload]++
			name := fmt.Sprintf("%s-%s-%s-r%d.pprof", bf.cpuProfile, peer, workload, runs[peer+"/"+workload])
			if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
				profErr = errors.Join(profErr, err)
				return
			}
			var err error
			if f, err = os.Create(name); err != nil {
				profErr = errors.Join(profErr, err)
				return
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				profErr = errors.Join(profErr, err, f.Close())
				f = nil
			}
		}
		o.AfterWorkload = func(string, string) {
			if f == nil {
				return
			}
			pprof.StopCPUProfile()
			profErr = errors.Join(profErr, f.Close())
			f = nil
		}
	}

	if bf.memProfile != "" {
		runs := map[string]int{}
		var name string
		write := func(path string) {
			f, err := os.Create(path)
			if err != nil {
				profErr = errors.Join(profErr, err)
				return
			}
			profErr = errors.Join(profErr, pprof.Lookup("allocs").WriteTo(f, 0), f.Close())
		}
		before, after := o.BeforeWorkload, o.AfterWorkload
		o.BeforeWorkload = func(peer, workload string) {
			runs[peer+"/"+workload]++
			name = fmt.Sprintf("%s-%s-%s-r%d", bf.memProfile, peer, workload, runs[peer+"/"+workload])
			if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
				profErr = errors.Join(profErr, err)
			}
			write(name + ".base.pprof")
			if before != nil {
				before(peer, workload)
			}
		}
		o.AfterWorkload = func(peer, workload string) {
			if after != nil {
				after(peer, workload)
			}
			write(name + ".pprof")
		}
	}

	rep, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	if bf.output == "json" {
		err = rep.WriteJSON(w)
	} else {
		err = rep.WriteTable(w)
	}
	if profErr != nil {
		err = errors.Join(err, fmt.Errorf("cpu profile: %w", profErr))
	}
	return err
}

// benchInCI reports whether the bench runs in CI, where a missing peer is an
// error rather than a skipped row.
func benchInCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}
