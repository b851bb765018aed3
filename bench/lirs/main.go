// Command lirs-bench compares github.com/veltrixdb/veltrix/pkg/lirs with
// other Go caches and prints markdown tables:
//
//   - hit ratios on the traces of the LIRS paper (Jiang & Zhang, SIGMETRICS
//     2002), next to the authors' simulator's, and on Zipf(1.01) with and
//     without scans;
//   - throughput at GOMAXPROCS=2 on a 64Ki-entry Zipf workload, 100% reads
//     and 75% reads / 25% writes.
//
// It lives in a module of its own so that the other caches stay out of the
// product's dependencies. Run it from this directory with
//
//	GOWORK=off go run .
//
// It takes about two minutes on two cores.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"
)

func main() {
	var (
		traceDir   = flag.String("traces", "../../../shared/testdata/lirs", "directory of the paper's *.trace.gz files and their README.md")
		hit        = flag.Bool("hit", true, "measure hit ratios")
		throughput = flag.Bool("throughput", true, "measure throughput")
		procs      = flag.Int("procs", 2, "GOMAXPROCS, and goroutines, for the throughput runs")
		duration   = flag.Duration("duration", time.Second, "length of one throughput run")
		runs       = flag.Int("runs", 3, "throughput runs per cache and workload; the median is reported")
		only       = flag.String("caches", "", "comma-separated names of the caches to measure throughput for (default: all)")
	)
	flag.Parse()
	runtime.GOMAXPROCS(*procs)
	out := os.Stdout
	fmt.Fprintf(out, "# lirs vs Go caches (%s, %s/%s, %d CPUs, GOMAXPROCS=%d)\n\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), *procs)
	if *hit {
		if err := hitRatios(out, *traceDir); err != nil {
			fmt.Fprintln(os.Stderr, "lirs-bench:", err)
			os.Exit(1)
		}
	}
	if *throughput {
		throughputs(out, *procs, *duration, *runs, *only)
	}
}

func mustWrite(w io.Writer, format string, args ...any) {
	if _, err := fmt.Fprintf(w, format, args...); err != nil {
		panic(err)
	}
}
