package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/veltrixdb/veltrix/cmd/veltrix/internal/bench"
	"github.com/veltrixdb/veltrix/pkg/flagenv"
)

func init() {
	register(command{name: "bench", usage: "benchmark Veltrix side by side with etcd, Redis and raw Pebble (YCSB A-D, batch get, bulk import)", run: benchCmd})
}

func benchCmd(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("veltrix bench", flag.ContinueOnError)
	var o bench.Options
	workloads := []string{"A", "B", "C", "D", "PUT", "BATCHGET", "IMPORT"}
	var peers []string
	for _, p := range bench.Peers {
		peers = append(peers, p.Name)
	}
	fs.Var((*flagenv.StringList)(&workloads), "workloads", "comma-separated workloads: A (50/50 read/update), B (95/5), C (read only), D (read latest, 5% inserts), PUT (update only), BATCHGET (16 keys per call), IMPORT (bulk import)")
	fs.Var((*flagenv.StringList)(&peers), "peers", "comma-separated peers: "+strings.Join(peers, ","))
	fs.Uint64Var(&o.Keys, "keys", 100000, "keys loaded into every peer before the workloads")
	fs.IntVar(&o.ValueSize, "value-size", 1024, "value size in bytes")
	fs.IntVar(&o.Concurrency, "concurrency", 32, "client goroutines (the same for every peer)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured time of each workload on each peer")
	fs.DurationVar(&o.Warmup, "warmup", 0, "unmeasured run before each workload (default: duration/5, at most 1s; negative: none)")
	dist := fs.String("distribution", "zipfian", "key distribution: zipfian or uniform (D always reads the latest keys)")
	fs.Float64Var(&o.Rate, "rate", 0, "0: closed loop (peak throughput); N: open loop at N ops/s, latency measured from each operation's intended start")
	output := fs.String("output", "table", "output format: table or json")
	fs.BoolVar(&o.Sync, "sync", true, "peers acknowledge writes only once on disk: Veltrix WAL fsync, etcd fsync, Redis appendfsync always, Pebble Sync")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the key and operation choices")
	fs.StringVar(&o.Dir, "dir", "", "where peers keep their data while they run (default: the system temp dir)")
	fs.IntVar(&o.ImportItems, "import-items", 200000, "items in the generated export of the IMPORT workload")
	fs.IntVar(&o.ImportItemBytes, "import-item-bytes", 1024, "size of one exported item (its stored encoding)")
	fs.IntVar(&o.ImportWorkers, "import-workers", 8, "BatchWrite calls in flight during the import")
	fs.IntVar(&o.ImportBatch, "import-batch", 500, "mutations per BatchWrite during the import")
	noTargets := fs.Bool("no-targets", false, "skip the extra runs for the issue #9 targets and the targets table")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of every measured run to PREFIX-<peer>-<workload>.pprof (clients and in-process servers)")
	verbose := fs.Bool("v", false, "print progress and the servers' warnings to stderr")
	if _, err := parse(fs, args, 0, 0, nil); err != nil {
		return err
	}
	if *output != "table" && *output != "json" {
		return usageErr("--output %q: want table or json", *output)
	}
	d, err := bench.ParseDistribution(*dist)
	if err != nil {
		return usageErr("--distribution: %v", err)
	}
	o.Distribution = d
	o.NoTargets = *noTargets
	o.Workloads, o.Peers = workloads, peers
	o.RequirePeers = benchInCI()
	o.Command = "veltrix bench " + strings.Join(args, " ")
	o.Progress = os.Stderr
	o.Logger = slog.New(slog.DiscardHandler)
	if *verbose {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	} else if *output == "json" {
		o.Progress = io.Discard
	}
	if err := o.Validate(); err != nil {
		return usageErr("%v", err)
	}
	var profErr error
	if *cpuProfile != "" {
		var f *os.File
		o.BeforeWorkload = func(peer, workload string) {
			name := fmt.Sprintf("%s-%s-%s.pprof", *cpuProfile, peer, workload)
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

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	if *output == "json" {
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
