package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"github.com/veltrixdb/veltrix/pkg/client"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

func init() {
	register(command{name: "cluster", build: clusterCmd})
}

func clusterCmd(c *conn) *cobra.Command {
	return group("cluster", "cluster-wide state: rebalance status [--watch]",
		group("rebalance", "data movement between nodes", rebalanceStatusCmd(c)))
}

// stageOrder is the order moves walk through (pkg/placement's stages);
// unknown stages sort last, by name.
var stageOrder = []string{"pending", "streaming", "read_new", "cleanup"}

func stageRank(s string) int {
	if i := slices.Index(stageOrder, s); i >= 0 {
		return i
	}
	return len(stageOrder)
}

// inFlight counts the moves in flight by stage, in stage order:
// "2 pending, 3 streaming, 1 cleanup"; "none" when there are none.
func inFlight(r *kvv1.RebalanceStatusResponse) string {
	counts := map[string]int{}
	var stages []string
	for _, m := range r.GetMoves() {
		if counts[m.Stage] == 0 {
			stages = append(stages, m.Stage)
		}
		counts[m.Stage]++
	}
	if len(stages) == 0 {
		return "none"
	}
	slices.SortFunc(stages, func(a, b string) int {
		if d := stageRank(a) - stageRank(b); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(stages))
	for i, s := range stages {
		parts[i] = fmt.Sprintf("%d %s", counts[s], orDash(s))
	}
	return strings.Join(parts, ", ")
}

// rebalancePercent is moved/(moved+remaining) in whole percent; 100 when
// nothing is left.
func rebalancePercent(r *kvv1.RebalanceStatusResponse) uint64 {
	total := r.GetMoved() + r.GetRemaining()
	if total == 0 {
		return 100
	}
	return r.GetMoved() * 100 / total
}

// rateText is the streamed bytes, their rate and the ETA:
// "1.5 GiB streamed at 48.0 MiB/s, ETA 3m20s".
func rateText(r *kvv1.RebalanceStatusResponse) string {
	s := fmtBytes(r.GetBytesStreamed()) + " streamed"
	if rate := r.GetRateBytesPerSecond(); rate > 0 {
		s += " at " + fmtBytes(uint64(rate)) + "/s"
	}
	if e := r.GetEta(); e != nil && !r.GetBalanced() {
		s += ", ETA " + e.AsDuration().Round(time.Second).String()
	} else if !r.GetBalanced() {
		s += ", ETA unknown"
	}
	return s
}

// rebalanceLine is one line for a log or a status header.
func rebalanceLine(r *kvv1.RebalanceStatusResponse) string {
	if r.GetBalanced() {
		s := fmt.Sprintf("balanced at placement epoch %d", r.GetPlacementEpoch())
		if r.GetMoved() > 0 {
			s += fmt.Sprintf(" (%d moves done)", r.GetMoved())
		}
		if n := len(r.GetMoves()); n > 0 {
			// Balanced counts only moves that affect routing.
			s += fmt.Sprintf("; %d cleanups still dropping old copies", n)
		}
		return s + underReplicatedText(r)
	}
	return fmt.Sprintf("rebalancing: %d/%d moves (%d%%), in flight: %s; %s%s",
		r.GetMoved(), r.GetMoved()+r.GetRemaining(), rebalancePercent(r), inFlight(r), rateText(r), underReplicatedText(r))
}

func underReplicatedText(r *kvv1.RebalanceStatusResponse) string {
	if n := r.GetUnderReplicated(); n > 0 {
		return fmt.Sprintf("; %d partitions UNDER-REPLICATED", n)
	}
	return ""
}

// maxMovesShown bounds the moves table; --output json has them all.
const maxMovesShown = 20

// rebalanceReport prints the summary and the moves in flight.
func rebalanceReport(w io.Writer, r *kvv1.RebalanceStatusResponse, now time.Time) error {
	state := "rebalancing"
	if r.GetBalanced() {
		state = "balanced"
	}
	fmt.Fprintf(w, "%s at placement epoch %d\n", state, r.GetPlacementEpoch())
	rows := [][]string{
		{"moves", fmt.Sprintf("%d moved, %d remaining (%d%%)", r.GetMoved(), r.GetRemaining(), rebalancePercent(r))},
		{"in flight", inFlight(r)},
		{"streamed", rateText(r)},
	}
	if st := r.GetStartTime(); st != nil {
		rows = append(rows, []string{"started", fmt.Sprintf("%s (%s ago)", fmtTime(st.AsTime()), now.Sub(st.AsTime()).Round(time.Second))})
	}
	under := fmt.Sprintf("%d partitions", r.GetUnderReplicated())
	if r.GetUnderReplicated() > 0 {
		under += " (fewer than RF complete replicas: a node is down, removed as dead, or backfilling in place)"
	}
	rows = append(rows, []string{"under-replicated", under})
	for _, row := range rows {
		fmt.Fprintf(w, "  %-18s %s\n", row[0]+":", row[1])
	}
	if len(r.GetMoves()) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	moves := slices.Clone(r.GetMoves())
	slices.SortStableFunc(moves, func(a, b *kvv1.PartitionMove) int {
		if d := stageRank(a.Stage) - stageRank(b.Stage); d != 0 {
			return d
		}
		return int(a.Partition) - int(b.Partition)
	})
	var more int
	if len(moves) > maxMovesShown {
		more, moves = len(moves)-maxMovesShown, moves[:maxMovesShown]
	}
	if err := table(w, []string{"PARTITION", "MOVE", "STAGE", "RECORDS", "BYTES", "ERROR"}, moveRows(moves)); err != nil {
		return err
	}
	if more > 0 {
		_, err := fmt.Fprintf(w, "… %d more moves (veltrix cluster rebalance status --output json)\n", more)
		return err
	}
	return nil
}

// moveText describes a move the way pkg/placement's Move.String does.
func moveText(m *kvv1.PartitionMove) string {
	switch {
	case m.Stage == "cleanup" || m.Add == "":
		return m.Remove + " drops its copy"
	case m.Add == m.Remove:
		return m.Add + " backfills in place"
	case m.Remove == "":
		return "+" + m.Add
	}
	return m.Remove + " → " + m.Add
}

func moveRows(moves []*kvv1.PartitionMove) [][]string {
	rows := make([][]string, 0, len(moves))
	for _, m := range moves {
		rows = append(rows, []string{strconv.FormatUint(uint64(m.Partition), 10), moveText(m), orDash(m.Stage),
			strconv.FormatUint(m.Records, 10), fmtBytes(m.Bytes), orDash(m.Error)})
	}
	return rows
}

const rebalanceStatusLong = `Shows the data movement in progress: moves in flight by stage, moves done and
remaining, bytes streamed, rate, ETA and under-replicated partitions. With
--watch it refreshes until the placement is balanced; with --output json it
prints one JSON object per line, one per refresh (with yaml, one document).

Exit codes with --watch: 0 balanced, 1 error, 2 usage error, 130 interrupted (Ctrl-C)
before the cluster was balanced: the rebalance goes on.`

func rebalanceStatusCmd(c *conn) *cobra.Command {
	var (
		watch    bool
		interval time.Duration
	)
	cmd := leaf("status [--watch]", "moves in flight, moved/remaining, rate, ETA; --watch until balanced", 0, 0, func(cmd *cobra.Command, _ []string) error {
		if interval <= 0 {
			return usageErr("--interval %v: must be positive", interval)
		}
		return c.withRouter(cmd, func(ctx context.Context, cl *client.Client) error {
			fetch := func(ctx context.Context) (*kvv1.RebalanceStatusResponse, error) {
				r, err := cl.Admin().RebalanceStatus(ctx, &kvv1.RebalanceStatusRequest{})
				if err != nil {
					return nil, explain(err, "rebalance status")
				}
				return r, nil
			}
			w := cmd.OutOrStdout()
			if !watch {
				r, err := fetch(ctx)
				if err != nil {
					return err
				}
				return c.print(w, r, func() error { return rebalanceReport(w, r, time.Now()) })
			}
			mode := watchLines
			switch {
			case c.output == "json":
				mode = watchJSON
			case c.output == "yaml":
				mode = watchYAML
			case isTerminal(w):
				mode = watchBar
			}
			return watchRebalance(ctx, w, fetch, interval, mode)
		})
	})
	cmd.Long = rebalanceStatusLong
	cmd.Flags().BoolVar(&watch, "watch", false, "refresh until the cluster is balanced (exit 0) or Ctrl-C (exit 130)")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "time between refreshes with --watch")
	return cmd
}

type watchMode int

const (
	// watchLines prints a summary line whenever it changes (a log, a pipe).
	watchLines watchMode = iota
	// watchJSON prints one protojson object per line, one per refresh.
	watchJSON
	// watchBar draws a progress bar (a terminal).
	watchBar
	// watchYAML prints one YAML document per refresh.
	watchYAML
)

// heartbeat is how often --watch prints an unchanged rebalance to a log.
const heartbeat = 30 * time.Second

// progressKey is what a log line is printed for when it changes: the moves,
// their stages, records and errors, and the under-replicated count.
func progressKey(r *kvv1.RebalanceStatusResponse) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d/%d/%d/%v", r.GetPlacementEpoch(), r.GetMoved(), r.GetRemaining(), r.GetUnderReplicated(), r.GetBalanced())
	for _, m := range r.GetMoves() {
		fmt.Fprintf(&b, "|%d %s %s %s %d %s", m.Partition, m.Add, m.Remove, m.Stage, m.Records, m.Error)
	}
	return b.String()
}

// watchRebalance polls fetch every interval until the cluster is balanced
// (nil) or ctx ends (exitInterrupted: the rebalance goes on).
// barOpts are for tests (mpb draws only on a terminal unless told).
func watchRebalance(ctx context.Context, w io.Writer, fetch func(context.Context) (*kvv1.RebalanceStatusResponse, error), interval time.Duration, mode watchMode, barOpts ...mpb.ContainerOption) error {
	var bar *rebalanceBar
	defer func() {
		if bar != nil {
			bar.finish()
		}
	}()
	interrupted := func() error {
		if bar != nil {
			bar.finish()
		}
		if mode != watchJSON && mode != watchYAML {
			fmt.Fprintf(w, "\nstopped watching; the rebalance goes on (%s)\n", followHint)
		}
		return withExit(exitInterrupted, errors.New("interrupted before the cluster was balanced"))
	}
	var lastKey string
	var lastLine time.Time
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r, err := fetch(ctx)
		if ctx.Err() != nil {
			return interrupted()
		}
		if err != nil {
			return err
		}
		switch mode {
		case watchJSON:
			b, err := protojson.Marshal(r)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintln(w, string(b)); err != nil {
				return err
			}
		case watchYAML:
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
			if err := printYAML(w, r); err != nil {
				return err
			}
		case watchBar:
			if bar == nil {
				bar = newRebalanceBar(ctx, w, barOpts...)
			}
			bar.update(r)
		default:
			// A line when the progress changes (not the rate alone, which
			// changes every second), and every heartbeat while it does not.
			key := progressKey(r)
			if now := time.Now(); key != lastKey || now.Sub(lastLine) >= heartbeat {
				lastKey, lastLine = key, now
				if _, err := fmt.Fprintf(w, "%s %s\n", now.UTC().Format(time.TimeOnly), rebalanceLine(r)); err != nil {
					return err
				}
			}
		}
		if r.GetBalanced() {
			if bar != nil {
				bar.finish()
				fmt.Fprintln(w, rebalanceLine(r))
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return interrupted()
		case <-t.C:
		}
	}
}

// rebalanceBar draws moved/(moved+remaining) with the summary beside it.
// Like jobBar it starts with an unknown total and sets it at each refresh:
// a rebalance's total grows when a node joins while it runs.
type rebalanceBar struct {
	p   *mpb.Progress
	bar *mpb.Bar

	mu   sync.Mutex
	last *kvv1.RebalanceStatusResponse
	done bool
}

func newRebalanceBar(ctx context.Context, w io.Writer, opts ...mpb.ContainerOption) *rebalanceBar {
	b := &rebalanceBar{last: &kvv1.RebalanceStatusResponse{}}
	opts = append([]mpb.ContainerOption{mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(200 * time.Millisecond)}, opts...)
	// Not ctx: a cancelled container stops drawing before the last frame.
	b.p = mpb.NewWithContext(context.WithoutCancel(ctx), opts...)
	b.bar = b.p.New(0, mpb.BarStyle(),
		mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
			r := b.status()
			return fmt.Sprintf("rebalance %d/%d ", r.GetMoved(), r.GetMoved()+r.GetRemaining())
		})),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return barText(b.status()) })),
	)
	return b
}

// barText is the short summary beside the bar, kept to one terminal line:
// " 25%  5 in flight  48.0 MiB/s  ETA 3m20s  2 UNDER-REPLICATED".
func barText(r *kvv1.RebalanceStatusResponse) string {
	s := fmt.Sprintf(" %3d%%  %d in flight", rebalancePercent(r), len(r.GetMoves()))
	if rate := r.GetRateBytesPerSecond(); rate > 0 {
		s += "  " + fmtBytes(uint64(rate)) + "/s"
	}
	if e := r.GetEta(); e != nil && !r.GetBalanced() {
		s += "  ETA " + e.AsDuration().Round(time.Second).String()
	}
	if n := r.GetUnderReplicated(); n > 0 {
		s += fmt.Sprintf("  %d UNDER-REPLICATED", n)
	}
	return s
}

func (b *rebalanceBar) status() *kvv1.RebalanceStatusResponse {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

func (b *rebalanceBar) update(r *kvv1.RebalanceStatusResponse) {
	b.mu.Lock()
	b.last = r
	b.mu.Unlock()
	done, total := int64(r.GetMoved()), int64(r.GetMoved()+r.GetRemaining())
	if total > 0 {
		b.bar.SetTotal(max(total, done), false)
	}
	b.bar.SetCurrent(done)
}

// finish draws the last frame, full when balanced, and waits for it.
func (b *rebalanceBar) finish() {
	if b.done {
		return
	}
	b.done = true
	if b.status().GetBalanced() {
		b.bar.SetTotal(-1, true)
	} else {
		b.bar.Abort(false)
	}
	b.p.Wait()
}
