package lirs

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// traceDir holds the paper's traces and the reference hit ratios, outside
// the repository.
const traceDir = "../../../shared/testdata/lirs"

func requireTraces(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(traceDir, "README.md")); err != nil {
		t.Skipf("LIRS traces not available (%v): put the paper's traces and README.md in %s to run this test", err, traceDir)
	}
}

// readTrace returns the block numbers of a gzip'd trace, one per line.
func readTrace(t testing.TB, name string) []uint64 {
	t.Helper()
	path := filepath.Join(traceDir, name+".trace.gz")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var refs []uint64
	sc := bufio.NewScanner(zr)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" {
			continue
		}
		b, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s:%d: %v", path, line, err)
		}
		refs = append(refs, b)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return refs
}

// referenceTable parses the hit-ratio table of the traces' README: trace →
// cache size → hit ratio in percent.
func referenceTable(t testing.TB) (sizes []int, table map[string]map[int]float64) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(traceDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	table = map[string]map[int]float64{}
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
					t.Fatalf("README header %q: %v", line, err)
				}
				sizes = append(sizes, n)
			}
		case strings.HasPrefix(cells[0], "---"):
		default:
			if len(cells) != len(sizes)+1 {
				t.Fatalf("README row %q has %d sizes, header has %d", line, len(cells)-1, len(sizes))
			}
			row := map[int]float64{}
			for i, c := range cells[1:] {
				v, err := strconv.ParseFloat(c, 64)
				if err != nil {
					t.Fatalf("README row %q: %v", line, err)
				}
				row[sizes[i]] = v
			}
			table[cells[0]] = row
		}
	}
	if len(sizes) == 0 || len(table) == 0 {
		t.Fatal("no hit-ratio table found in README.md")
	}
	return sizes, table
}

// replay runs a trace through c as Get, then Set on a miss, and returns the
// hit ratio in percent.
func replay(c *Cache[uint64, uint64], refs []uint64) float64 {
	var hits int
	for _, k := range refs {
		if getOrSet(c, k) {
			hits++
		}
	}
	return 100 * float64(hits) / float64(len(refs))
}

// TestTraces replays the paper's traces in single-shard mode with unit costs
// and default options (so with the concurrent reordering of Get, and the
// bound on non-resident entries), and requires hit ratios within 0.5 point
// of the reference simulator's at every size of the README's table.
func TestTraces(t *testing.T) {
	requireTraces(t)
	sizes, table := referenceTable(t)
	for name, want := range table {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			refs := readTrace(t, name)
			for _, size := range sizes {
				c, err := New(Options[uint64, uint64]{Capacity: int64(size), Shards: 1})
				if err != nil {
					t.Fatal(err)
				}
				got := replay(c, refs)
				if d := math.Abs(got - want[size]); d > 0.5 {
					t.Errorf("%s@%d: hit ratio %.2f%%, reference %.1f%% (off by %.2f points, more than 0.5)", name, size, got, want[size], d)
				} else {
					t.Logf("%s@%d: hit ratio %.2f%%, reference %.1f%%", name, size, got, want[size])
				}
				if st, bound := c.Stats(), max(2*size, DefaultMinNonResident); st.NonResident > bound {
					t.Errorf("%s@%d: %d non-resident entries, bound %d", name, size, st.NonResident, bound)
				}
			}
		})
	}
}

// TestTracesMatchReferenceModel replays every trace through the exact
// configuration and the lirs.c model and requires identical hit counts.
func TestTracesMatchReferenceModel(t *testing.T) {
	requireTraces(t)
	if testing.Short() {
		t.Skip("-short: replays every trace at every size")
	}
	sizes, table := referenceTable(t)
	for name := range table {
		refs := readTrace(t, name)
		for _, size := range sizes {
			t.Run(fmt.Sprintf("%s@%d", name, size), func(t *testing.T) {
				ref := newRefLIRS(size)
				c := exactCache(t, size)
				for i, k := range refs {
					if got, want := getOrSet(c, k), ref.access(k); got != want {
						t.Fatalf("reference %d (block %d): cache hit=%v, lirs.c hit=%v", i, k, got, want)
					}
				}
			})
		}
	}
}
