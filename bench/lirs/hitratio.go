package main

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// workload is a sequence of keys replayed at several cache sizes.
type workload struct {
	name  string
	keys  []uint64
	sizes []int
	ref   map[int]float64 // the authors' simulator, when known
}

// targetTraces are the traces on which lirs must match or beat every peer.
var targetTraces = []string{"loop", "scan", "gli", "ps", "multi1", "multi2", "multi3"}

// extraSizes adds the sizes of the README's comparison points.
var extraSizes = map[string][]int{"loop": {512}, "ps": {200}}

// readmePoints are the README's comparison points on the target traces.
var readmePoints = []string{"gli@1000", "loop@512", "scan@1000", "ps@200", "multi3@2000"}

func loadWorkloads(dir string) ([]workload, error) {
	sizes, table, err := referenceTable(filepath.Join(dir, "README.md"))
	if err != nil {
		return nil, err
	}
	var ws []workload
	names := []string{"loop", "scan", "gli", "ps", "multi1", "multi2", "multi3", "sprite", "cpp", "cs", "2_pools", "zigzag"}
	for _, name := range names {
		keys, err := readTrace(filepath.Join(dir, name+".trace.gz"))
		if err != nil {
			return nil, err
		}
		s := append(slices.Clone(sizes), extraSizes[name]...)
		slices.Sort(s)
		ws = append(ws, workload{name: name, keys: keys, sizes: s, ref: table[name]})
	}
	ws = append(ws,
		workload{name: "zipf(1.01)", keys: zipfTrace(1_000_000, 0), sizes: []int{1000, 10000}},
		workload{name: "zipf+scans", keys: zipfTrace(1_000_000, 1000), sizes: []int{1000, 10000}},
	)
	return ws, nil
}

// zipfTrace returns n references drawn from Zipf(1.01) over 2^17 keys. When
// scan is positive, every 4,000 references are followed by a scan of scan
// keys never seen before or after.
func zipfTrace(n, scan int) []uint64 {
	rng := rand.New(rand.NewPCG(42, 1))
	z := rand.NewZipf(rng, 1.01, 1, 1<<17-1)
	next := uint64(1 << 40)
	keys := make([]uint64, 0, n)
	for len(keys) < n {
		keys = append(keys, z.Uint64())
		if scan > 0 && len(keys)%5000 == 4000 {
			for range scan {
				keys = append(keys, next)
				next++
			}
		}
	}
	return keys[:n]
}

func readTrace(path string) ([]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var keys []uint64
	sc := bufio.NewScanner(zr)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" {
			continue
		}
		k, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		keys = append(keys, k)
	}
	return keys, sc.Err()
}

// referenceTable parses the README's table of the reference simulator's hit
// ratios: trace → size → percent.
func referenceTable(path string) ([]int, map[string]map[int]float64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var sizes []int
	table := map[string]map[int]float64{}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case cells[0] == "trace":
			for _, c := range cells[1:] {
				n, err := strconv.Atoi(c)
				if err != nil {
					return nil, nil, fmt.Errorf("%s: header %q: %w", path, line, err)
				}
				sizes = append(sizes, n)
			}
		case strings.HasPrefix(cells[0], "---"):
		default:
			row := map[int]float64{}
			for i, c := range cells[1:] {
				v, err := strconv.ParseFloat(c, 64)
				if err != nil || i >= len(sizes) {
					return nil, nil, fmt.Errorf("%s: row %q: bad cell %q", path, line, c)
				}
				row[sizes[i]] = v
			}
			table[cells[0]] = row
		}
	}
	if len(sizes) == 0 {
		return nil, nil, fmt.Errorf("%s: no hit-ratio table", path)
	}
	return sizes, table, nil
}

// replay returns the hit ratio, in percent, of a cache of the given size
// on keys: Get, then Set on a miss.
func replay(im impl[uint64], size int, keys []uint64) float64 {
	c := im.make(size, true)
	defer c.close()
	v := []byte("v")
	hits := 0
	for _, k := range keys {
		if c.get(k) {
			hits++
		} else {
			c.set(k, v)
		}
	}
	return 100 * float64(hits) / float64(len(keys))
}

func hitRatios(w io.Writer, dir string) error {
	ws, err := loadWorkloads(dir)
	if err != nil {
		return fmt.Errorf("loading traces (see -traces): %w", err)
	}
	caches := impls[uint64]()
	type job struct{ wi, si, ci int }
	results := make([][][]float64, len(ws))
	var jobs []job
	for wi, wl := range ws {
		results[wi] = make([][]float64, len(wl.sizes))
		for si := range wl.sizes {
			results[wi][si] = make([]float64, len(caches))
			for ci := range caches {
				jobs = append(jobs, job{wi, si, ci})
			}
		}
	}
	ch := make(chan job)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for j := range ch {
				results[j.wi][j.si][j.ci] = replay(caches[j.ci], ws[j.wi].sizes[j.si], ws[j.wi].keys)
			}
		})
	}
	for _, j := range jobs {
		ch <- j
	}
	close(ch)
	wg.Wait()

	mustWrite(w, "## Hit ratio (%%)\n\n")
	mustWrite(w, "Get, then Set on a miss; unit costs. `lirs` is the default configuration (one shard below 8192 entries, so it equals `lirs (1 shard)` on the traces); `ref` is the authors' lirs.c from the traces' README. Caches with write buffers are drained after every Set. **Bold**: the best of lirs and its peers.\n\n")
	mustWrite(w, "| workload | size | ref |")
	for _, c := range caches {
		mustWrite(w, " %s |", c.name)
	}
	mustWrite(w, "\n|---|---:|---:|")
	for range caches {
		mustWrite(w, "---:|")
	}
	mustWrite(w, "\n")
	var met, missed []string
	for wi, wl := range ws {
		for si, size := range wl.sizes {
			row := results[wi][si]
			ref := "–"
			if v, ok := wl.ref[size]; ok {
				ref = fmt.Sprintf("%.1f", v)
			}
			best := slices.Max(row)
			mustWrite(w, "| %s | %d | %s |", wl.name, size, ref)
			for _, v := range row {
				if v >= best-0.005 {
					mustWrite(w, " **%.2f** |", v)
				} else {
					mustWrite(w, " %.2f |", v)
				}
			}
			mustWrite(w, "\n")
			if slices.Contains(targetTraces, wl.name) {
				point := fmt.Sprintf("%s@%d", wl.name, size)
				// Peers are the caches after the two lirs columns.
				if peerBest := slices.Max(row[2:]); row[0] >= peerBest-0.005 {
					met = append(met, point)
				} else {
					missed = append(missed, fmt.Sprintf("%s (%.2f vs %.2f)", point, row[0], peerBest))
				}
			}
		}
	}
	mustWrite(w, "\nTarget, lirs ≥ every peer on loop, scan, gli, ps and multi*: met at %d of %d points", len(met), len(met)+len(missed))
	if len(missed) > 0 {
		mustWrite(w, "; not met at %s", strings.Join(missed, ", "))
	}
	var readmeMet []string
	for _, p := range readmePoints {
		if slices.Contains(met, p) {
			readmeMet = append(readmeMet, p)
		}
	}
	mustWrite(w, ". At the README's comparison points (%s): met at %d of %d.\n\n", strings.Join(readmePoints, ", "), len(readmeMet), len(readmePoints))
	return nil
}
