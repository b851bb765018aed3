package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// CompareRow is one workload×peer of a comparison of two builds: the
// medians over each build's rounds and the ratios new / base.
type CompareRow struct {
	Workload    string `json:"workload"`
	Peer        string `json:"peer"`
	Consistency string `json:"consistency,omitempty"`
	Note        string `json:"note,omitempty"`
	// Base and New are the medians of each build's rounds (Rounds holds
	// the single rounds).
	Base Result `json:"base"`
	New  Result `json:"new"`
	// Ratios are New / Base: above 1 is faster for ops/s, slower for CPU
	// per operation and P99.
	OpsRatio float64 `json:"ops_per_s_ratio"`
	CPURatio float64 `json:"cpu_per_op_ratio"`
	P99Ratio float64 `json:"p99_ratio"`
}

// Comparison is `veltrix bench --compare`'s report.
type Comparison struct {
	// BaseRev is the revision compared against; New is the working tree.
	BaseRev string       `json:"base_rev"`
	New     string       `json:"new"`
	Rounds  int          `json:"rounds"`
	Command string       `json:"command,omitempty"`
	Rows    []CompareRow `json:"rows"`
	// Imports compare the import jobs (IMPORT-MIGRATOR and IMPORT).
	Imports []CompareImportRow `json:"imports,omitempty"`
	Notes   []string           `json:"notes,omitempty"`
}

// CompareImportRow is one import (write path and cluster size) of a
// comparison: each build's medians over its rounds and the ratios new /
// base (above 1 is faster).
type CompareImportRow struct {
	// Import names it: "INGEST", "BATCH_WRITE" (IMPORT-MIGRATOR) or the
	// IMPORT workload's method.
	Import string `json:"import"`
	Nodes  int    `json:"nodes,omitempty"`
	Peer   string `json:"peer,omitempty"`
	// Base and New are each build's medians.
	Base       ImportMedians `json:"base"`
	New        ImportMedians `json:"new"`
	ItemsRatio float64       `json:"items_per_s_ratio"`
	CPURatio   float64       `json:"items_per_cpu_s_ratio"`
}

// ImportMedians are one build's medians of an import's rounds.
type ImportMedians struct {
	ItemsPerSec    float64 `json:"items_per_s"`
	ItemsPerCPUSec float64 `json:"items_per_cpu_s"`
	Rounds         int     `json:"rounds"`
}

// importKey names one import of a report.
type importKey struct {
	name, peer string
	nodes      int
}

// collectImports gathers each import's rounds (items/s, items/CPU-s) from
// one build's reports, in first-seen order.
func collectImports(reps []*Report) (map[importKey][][2]float64, []importKey) {
	m := map[importKey][][2]float64{}
	var order []importKey
	add := func(k importKey, perSec, perCPU float64) {
		if _, ok := m[k]; !ok {
			order = append(order, k)
		}
		m[k] = append(m[k], [2]float64{perSec, perCPU})
	}
	for _, r := range reps {
		for _, im := range r.MigratorImports {
			add(importKey{name: im.WritePath, nodes: im.Nodes}, im.ItemsPerSec, im.ItemsPerCPUSec)
		}
		for _, im := range r.Imports {
			add(importKey{name: im.Method, peer: im.Peer}, im.ItemsPerSec, im.ItemsPerSecCPU)
		}
	}
	return m, order
}

func importMedians(runs [][2]float64) ImportMedians {
	col := func(i int) float64 {
		v := make([]float64, len(runs))
		for j, r := range runs {
			v[j] = r[i]
		}
		return Median(v)
	}
	return ImportMedians{ItemsPerSec: col(0), ItemsPerCPUSec: col(1), Rounds: len(runs)}
}

// Compare pairs up the results of two builds' one-round reports (base[i]
// and new[i] from round i+1) by workload, peer and note, and computes each
// build's medians and the ratios. Rows appear in the first report's order;
// a result only one build has is left out with a note.
func Compare(baseRev, newName string, base, new []*Report) *Comparison {
	c := &Comparison{BaseRev: baseRev, New: newName, Rounds: max(len(base), len(new))}
	type key struct{ workload, peer, note string }
	collect := func(reps []*Report) (map[key][]Result, []key) {
		m := map[key][]Result{}
		var order []key
		for i, r := range reps {
			for _, res := range r.sortedResults() {
				// A report of several rounds gives its own rounds.
				runs := res.Rounds
				if len(runs) == 0 {
					runs = []Result{res}
				}
				k := key{res.Workload, res.Peer, res.Note}
				if _, ok := m[k]; !ok {
					order = append(order, k)
				}
				for _, x := range runs {
					x.Round = i + 1
					m[k] = append(m[k], x)
				}
			}
		}
		return m, order
	}
	bm, border := collect(base)
	nm, norder := collect(new)
	for _, k := range border {
		n, ok := nm[k]
		if !ok {
			c.Notes = append(c.Notes, fmt.Sprintf("%s on %s ran only in %s", k.workload, k.peer, baseRev))
			continue
		}
		b := Aggregate(bm[k])
		nw := Aggregate(n)
		row := CompareRow{
			Workload: k.workload, Peer: k.peer, Note: k.note, Consistency: nw.Consistency, Base: b, New: nw,
			OpsRatio: ratioOf(nw.OpsPerSec, b.OpsPerSec),
			CPURatio: ratioOf(float64(nw.CPUPerOp), float64(b.CPUPerOp)),
			P99Ratio: ratioOf(float64(nw.Latency.P99), float64(b.Latency.P99)),
		}
		c.Rows = append(c.Rows, row)
	}
	for _, k := range norder {
		if _, ok := bm[k]; !ok {
			c.Notes = append(c.Notes, fmt.Sprintf("%s on %s ran only in %s", k.workload, k.peer, newName))
		}
	}
	bi, biorder := collectImports(base)
	ni, niorder := collectImports(new)
	for _, k := range biorder {
		n, ok := ni[k]
		if !ok {
			c.Notes = append(c.Notes, fmt.Sprintf("import %s ran only in %s", k.name, baseRev))
			continue
		}
		b, nw := importMedians(bi[k]), importMedians(n)
		c.Imports = append(c.Imports, CompareImportRow{
			Import: k.name, Nodes: k.nodes, Peer: k.peer, Base: b, New: nw,
			ItemsRatio: ratioOf(nw.ItemsPerSec, b.ItemsPerSec),
			CPURatio:   ratioOf(nw.ItemsPerCPUSec, b.ItemsPerCPUSec),
		})
	}
	for _, k := range niorder {
		if _, ok := bi[k]; !ok {
			c.Notes = append(c.Notes, fmt.Sprintf("import %s ran only in %s", k.name, newName))
		}
	}
	return c
}

func ratioOf(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// WriteTable writes the comparison as a table.
func (c *Comparison) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "veltrix bench --compare: %s (NEW) against %s (BASE), %d rounds, the two builds alternating round by round\n", c.New, c.BaseRev, c.Rounds)
	if c.Command != "" {
		fmt.Fprintf(w, "command: %s\n", c.Command)
	}
	fmt.Fprintf(w, "\nMedians of the rounds, ± half their range; ratios NEW/BASE (ops/s: higher is faster; CPU µs/op and P99: lower is cheaper)\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "WORKLOAD\tPEER\tREADS\tBASE OPS/S\tNEW OPS/S\tRATIO\tBASE CPU µs/OP\tNEW CPU µs/OP\tRATIO\tBASE P99\tNEW P99\tRATIO\t")
	for _, r := range c.Rows {
		name := r.Workload
		if r.Note != "" {
			name += " (" + r.Note + ")"
		}
		sp := func(res Result, f func(*Spread) (float64, float64, float64)) string {
			if res.Spread == nil {
				return ""
			}
			med, lo, hi := f(res.Spread)
			return " " + spreadPct(med, lo, hi)
		}
		ops := func(res Result) string {
			return fmtRate(res.OpsPerSec) + sp(res, func(s *Spread) (float64, float64, float64) { return res.OpsPerSec, s.OpsPerSecMin, s.OpsPerSecMax })
		}
		cpu := func(res Result) string {
			return fmtCPU(res.CPUPerOp) + sp(res, func(s *Spread) (float64, float64, float64) {
				return float64(res.CPUPerOp), float64(s.CPUPerOpMin), float64(s.CPUPerOpMax)
			})
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, r.Peer, orDash(r.Consistency),
			ops(r.Base), ops(r.New), fmtRatio(r.OpsRatio), cpu(r.Base), cpu(r.New), fmtRatio(r.CPURatio),
			fmtLat(r.Base.Latency.P99), fmtLat(r.New.Latency.P99), fmtRatio(r.P99Ratio))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(c.Imports) > 0 {
		fmt.Fprintf(w, "\nImports: medians of the rounds; ratios NEW/BASE (higher is faster)\n")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "IMPORT\tNODES\tPEER\tBASE ITEMS/S\tNEW ITEMS/S\tRATIO\tBASE ITEMS/CPU-S\tNEW ITEMS/CPU-S\tRATIO\t")
		for _, r := range c.Imports {
			nodes := "-"
			if r.Nodes > 0 {
				nodes = fmt.Sprint(r.Nodes)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Import, nodes, orDash(r.Peer),
				fmtRate(r.Base.ItemsPerSec), fmtRate(r.New.ItemsPerSec), fmtRatio(r.ItemsRatio),
				fmtRate(r.Base.ItemsPerCPUSec), fmtRate(r.New.ItemsPerCPUSec), fmtRatio(r.CPURatio))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, n := range c.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return nil
}
