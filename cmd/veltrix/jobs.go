package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

func init() {
	register(command{name: "import", build: importCmd})
	register(command{name: "verify", build: verifyCmd})
	register(command{name: "stream", build: streamCmd})
	register(command{name: "jobs", build: jobsCmd})
}

func jobsCmd(c *conn) *cobra.Command {
	return group("jobs", "list, get, watch, cancel, retry jobs and list their rejects",
		jobsListCmd(c), jobByIDCmd(c, "get", "show a job's report", jobsGet), jobByIDCmd(c, "watch", "follow a job until it ends (Ctrl-C leaves it running)", jobsWatch),
		jobByIDCmd(c, "cancel", "cancel a job", jobsCancel), jobsRetryCmd(c), jobByIDCmd(c, "rejects", "list the source lines a job rejected", jobsRejects))
}

// mappingFlags are the source-to-table mapping flags import, verify and
// stream share.
type mappingFlags struct {
	table, pk, sk, encoding, ttlAttr, filter string
	create                                   bool
	region, endpoint                         string
	awsProfile, awsCredentialsFile           string
	pathStyle                                bool
	jobID                                    string
	detach                                   bool
}

func (m *mappingFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&m.table, "table", "", "target Veltrix table (required)")
	fs.BoolVar(&m.create, "create-table", false, "create the target table if it does not exist")
	fs.StringVar(&m.pk, "pk", "", "partition key attribute, NAME:TYPE with TYPE S, N or B (required)")
	fs.StringVar(&m.sk, "sk", "", "sort key attribute, NAME:TYPE (optional)")
	fs.StringVar(&m.encoding, "encoding", "canonical", "value encoding: canonical, json or attr:NAME")
	fs.StringVar(&m.ttlAttr, "ttl-attr", "", "attribute holding the item's expiry in Unix seconds")
	fs.StringVar(&m.filter, "filter", "", `keep only matching items, e.g. 'attribute_exists(email) AND status = "active"'`)
	fs.StringVar(&m.region, "region", "", "AWS region (default: from the environment)")
	fs.StringVar(&m.endpoint, "aws-endpoint", "", "AWS endpoint override (a local S3 or DynamoDB)")
	fs.BoolVar(&m.pathStyle, "s3-path-style", false, "use path-style S3 addressing")
	fs.StringVar(&m.awsProfile, "aws-profile", "", "AWS profile the migrator reads credentials from (its shared config/credentials files); only the name is stored with the job")
	fs.StringVar(&m.awsCredentialsFile, "aws-credentials-file", "", "shared credentials file on the migrator's host (made absolute here); only the path is stored with the job")
	fs.StringVar(&m.jobID, "job-id", "", "job id; starting the same id again returns the existing job")
	fs.BoolVar(&m.detach, "detach", false, "start the job and return without watching it")
}

func keyAttrM(flagName, s string) (*migratorv1.KeyAttribute, error) {
	name, typ, ok := strings.Cut(s, ":")
	t, known := migratorv1.KeyType_value["KEY_TYPE_"+strings.ToUpper(typ)]
	if !ok || name == "" || !known || t == 0 {
		return nil, usageErr("--%s %q: want NAME:TYPE with TYPE S, N or B", flagName, s)
	}
	return &migratorv1.KeyAttribute{Name: name, Type: migratorv1.KeyType(t)}, nil
}

func (m *mappingFlags) mapping() (*migratorv1.Mapping, error) {
	if m.table == "" {
		return nil, usageErr("--table is required")
	}
	if m.pk == "" {
		return nil, usageErr("--pk is required (e.g. --pk userId:S)")
	}
	out := &migratorv1.Mapping{TargetTable: m.table, CreateTable: m.create, TtlAttribute: m.ttlAttr, Filter: m.filter}
	var err error
	if out.PartitionKey, err = keyAttrM("pk", m.pk); err != nil {
		return nil, err
	}
	if m.sk != "" {
		if out.SortKey, err = keyAttrM("sk", m.sk); err != nil {
			return nil, err
		}
	}
	switch {
	case m.encoding == "canonical":
		out.Encoding = migratorv1.ValueEncoding_VALUE_ENCODING_CANONICAL
	case m.encoding == "json":
		out.Encoding = migratorv1.ValueEncoding_VALUE_ENCODING_JSON
	case strings.HasPrefix(m.encoding, "attr:") && len(m.encoding) > 5:
		out.Encoding = migratorv1.ValueEncoding_VALUE_ENCODING_ATTRIBUTE
		out.ValueAttribute = m.encoding[5:]
	default:
		return nil, usageErr("--encoding %q: want canonical, json or attr:NAME", m.encoding)
	}
	return out, nil
}

// aws returns the AWS options of the job: credentials go by reference (a
// profile name, a file path), never the secret itself.
func (m *mappingFlags) aws() (*migratorv1.AwsOptions, error) {
	o := &migratorv1.AwsOptions{Region: m.region, Endpoint: m.endpoint, S3PathStyle: m.pathStyle, Profile: m.awsProfile}
	if f := m.awsCredentialsFile; f != "" {
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, usageErr("--aws-credentials-file %q: %v", f, err)
		}
		o.CredentialsFile = abs
	}
	return o, nil
}

func importCmd(c *conn) *cobra.Command {
	var (
		m              mappingFlags
		source, format string
		maxRejects     uint64
		rate           float64
		par            uint
		writePath      string
	)
	cmd := leaf("import --source s3://bucket/prefix|DIR --table T --pk NAME:TYPE", "import a DynamoDB export (S3 or a local folder) and watch its progress", 0, 0, func(cmd *cobra.Command, _ []string) error {
		if source == "" {
			return usageErr("--source is required")
		}
		mp, err := m.mapping()
		if err != nil {
			return err
		}
		awsOpts, err := m.aws()
		if err != nil {
			return err
		}
		exp := &migratorv1.ExportSource{Uri: source, Aws: awsOpts}
		switch strings.ToLower(format) {
		case "":
		case "dynamodb_json":
			exp.Format = migratorv1.ExportFormat_EXPORT_FORMAT_DYNAMODB_JSON
		case "ion":
			exp.Format = migratorv1.ExportFormat_EXPORT_FORMAT_ION
		default:
			return usageErr("--format %q: want dynamodb_json or ion", format)
		}
		spec := &migratorv1.ImportSpec{
			Source:  &migratorv1.ImportSpec_Export{Export: exp},
			Mapping: mp, MaxRejects: maxRejects, ItemsPerSecond: rate, Parallelism: uint32(par),
		}
		switch strings.ToLower(writePath) {
		case "auto":
		case "batch-write":
			spec.WritePath = migratorv1.WritePath_WRITE_PATH_BATCH_WRITE
		case "ingest":
			spec.WritePath = migratorv1.WritePath_WRITE_PATH_INGEST
		default:
			return usageErr("--write-path %q: want auto, batch-write or ingest", writePath)
		}
		return startJob(cmd, c, "import", m.detach, func(ctx context.Context, mc migratorv1.MigratorServiceClient) (*migratorv1.Job, error) {
			resp, err := mc.StartImport(ctx, &migratorv1.StartImportRequest{Spec: spec, JobId: m.jobID})
			return resp.GetJob(), err
		})
	})
	fs := cmd.Flags()
	m.addFlags(fs)
	fs.StringVar(&source, "source", "", "export location: s3://bucket/prefix or a local folder with manifest-summary.json (required)")
	fs.StringVar(&format, "format", "", "override the manifest's format: dynamodb_json or ion")
	fs.Uint64Var(&maxRejects, "max-rejects", 0, "fail the job after this many rejected lines (0: never)")
	fs.Float64Var(&rate, "rate", 0, "items per second at most (0: unlimited)")
	fs.UintVar(&par, "parallelism", 0, "files read at once (default 4)")
	fs.StringVar(&writePath, "write-path", "auto", "how items reach the storage nodes: ingest (sorted runs ingested as SSTs on every replica), batch-write (the router's BatchWrite, as live writes), or auto (ingest for exports of 64 MiB or more)")
	return cmd
}

func verifyCmd(c *conn) *cobra.Command {
	var (
		m              mappingFlags
		source, accept string
		sample         float64
		extra          bool
		maxMis         uint
	)
	cmd := leaf("verify --source s3://bucket/prefix|DIR --table T --pk NAME:TYPE", "compare a DynamoDB export with a Veltrix table", 0, 0, func(cmd *cobra.Command, _ []string) error {
		if source == "" {
			return usageErr("--source is required")
		}
		if sample <= 0 || sample > 1 {
			return usageErr("--sample %v: want 0 < f <= 1", sample)
		}
		mp, err := m.mapping()
		if err != nil {
			return err
		}
		awsOpts, err := m.aws()
		if err != nil {
			return err
		}
		spec := &migratorv1.VerifySpec{
			Source:  &migratorv1.VerifySpec_Export{Export: &migratorv1.ExportSource{Uri: source, Aws: awsOpts}},
			Mapping: mp, SampleFraction: sample, CheckExtra: extra, MaxMismatches: uint32(maxMis),
			AcceptRejectsJob: accept,
		}
		return startJob(cmd, c, "verify", m.detach, func(ctx context.Context, mc migratorv1.MigratorServiceClient) (*migratorv1.Job, error) {
			resp, err := mc.StartVerify(ctx, &migratorv1.StartVerifyRequest{Spec: spec, JobId: m.jobID})
			return resp.GetJob(), err
		})
	})
	fs := cmd.Flags()
	m.addFlags(fs)
	fs.StringVar(&source, "source", "", "export location, as for import (required)")
	fs.Float64Var(&sample, "sample", 1, "fraction of items compared byte for byte (0 < f <= 1)")
	fs.BoolVar(&extra, "check-extra", false, "also scan the table for items the source lacks")
	fs.UintVar(&maxMis, "max-mismatches", 1000, "most mismatches listed in the report")
	fs.StringVar(&accept, "accept-rejects", "", "IMPORT_JOB_ID: source lines this verify cannot compare pass when that import rejected them too (recorded in the report)")
	return cmd
}

func streamCmd(c *conn) *cobra.Command {
	var (
		m                               mappingFlags
		kind, stream, start, shard, seq string
		failAfter                       time.Duration
	)
	cmd := leaf("stream --kind dynamodb|kinesis --stream ARN|NAME --table T --pk NAME:TYPE", "start a CDC job (DynamoDB Streams or Kinesis) and watch its lag", 0, 0, func(cmd *cobra.Command, _ []string) error {
		awsOpts, err := m.aws()
		if err != nil {
			return err
		}
		spec := &migratorv1.StreamSpec{Stream: stream, ShardId: shard, SequenceNumber: seq, Aws: awsOpts}
		if failAfter < 0 {
			return usageErr("--fail-after %s: must not be negative", failAfter)
		}
		if failAfter > 0 {
			spec.FailAfter = durationpb.New(failAfter)
		}
		switch kind {
		case "dynamodb":
			spec.Kind = migratorv1.StreamKind_STREAM_KIND_DYNAMODB_STREAMS
		case "kinesis":
			spec.Kind = migratorv1.StreamKind_STREAM_KIND_KINESIS
		default:
			return usageErr("--kind %q: want dynamodb or kinesis", kind)
		}
		if stream == "" {
			return usageErr("--stream is required")
		}
		sp, ok := migratorv1.StartPosition_value["START_POSITION_"+strings.ToUpper(start)]
		if !ok || sp == 0 {
			return usageErr("--start %q: want trim_horizon, latest, at_sequence_number or after_sequence_number", start)
		}
		spec.Start = migratorv1.StartPosition(sp)
		if spec.Mapping, err = m.mapping(); err != nil {
			return err
		}
		return startJob(cmd, c, "stream", m.detach, func(ctx context.Context, mc migratorv1.MigratorServiceClient) (*migratorv1.Job, error) {
			resp, err := mc.StartStream(ctx, &migratorv1.StartStreamRequest{Spec: spec, JobId: m.jobID})
			return resp.GetJob(), err
		})
	})
	fs := cmd.Flags()
	m.addFlags(fs)
	fs.StringVar(&kind, "kind", "", "dynamodb (DynamoDB Streams) or kinesis (Kinesis Data Streams for DynamoDB) (required)")
	fs.StringVar(&stream, "stream", "", "stream ARN (dynamodb) or name/ARN (kinesis) (required)")
	fs.StringVar(&start, "start", "trim_horizon", "where a new job starts: trim_horizon, latest, at_sequence_number, after_sequence_number")
	fs.StringVar(&shard, "shard-id", "", "shard for the *_sequence_number starts")
	fs.StringVar(&seq, "sequence-number", "", "sequence number for the *_sequence_number starts")
	fs.DurationVar(&failAfter, "fail-after", 0, "fail the job when reads or writes have failed this long without a success (default 15m)")
	return cmd
}

func terminal(s migratorv1.JobState) bool {
	switch s {
	case migratorv1.JobState_JOB_STATE_SUCCEEDED, migratorv1.JobState_JOB_STATE_COMPLETED_WITH_ERRORS,
		migratorv1.JobState_JOB_STATE_FAILED, migratorv1.JobState_JOB_STATE_CANCELLED:
		return true
	}
	return false
}

// follow watches a job until it ends (or ctx ends: Ctrl-C, which leaves it
// running), drawing a progress bar on a terminal, then prints the final
// report.
// startJob starts a migrator job with start (one call under --timeout)
// and follows it (or not, with --detach).
func startJob(cmd *cobra.Command, c *conn, what string, detach bool, start func(context.Context, migratorv1.MigratorServiceClient) (*migratorv1.Job, error)) error {
	return c.withMigrator(cmd, func(ctx context.Context, mc migratorv1.MigratorServiceClient) error {
		var job *migratorv1.Job
		if err := c.call(ctx, func(ctx context.Context) (err error) {
			job, err = start(ctx, mc)
			return err
		}); err != nil {
			return explain(err, "start "+what)
		}
		return follow(ctx, cmd.OutOrStdout(), c, mc, job, detach)
	})
}

func follow(ctx context.Context, w io.Writer, c *conn, mc migratorv1.MigratorServiceClient, job *migratorv1.Job, detach bool) error {
	if detach || terminal(job.State) {
		return report(ctx, w, c, mc, job)
	}
	last, err := watch(ctx, w, c, mc, job)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(w, "\nstopped watching; job %s keeps running (veltrix jobs watch %s)\n", job.Id, job.Id)
			return nil
		}
		return explain(err, "watch job")
	}
	return report(ctx, w, c, mc, last)
}

// watch streams a job's progress; on a terminal it draws a bar, otherwise
// (and with --output json or yaml) it prints a line every few seconds.
func watch(ctx context.Context, w io.Writer, c *conn, mc migratorv1.MigratorServiceClient, job *migratorv1.Job) (*migratorv1.Job, error) {
	stream, err := mc.WatchJob(ctx, &migratorv1.WatchJobRequest{Id: job.Id})
	if err != nil {
		return nil, err
	}
	tty := isTerminal(w) && c.output == "table"
	var bar *jobBar
	if tty {
		bar = newJobBar(ctx, w, job)
	}
	last := job
	lastLine := time.Time{}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if bar != nil {
				bar.finish(nil)
			}
			return last, err
		}
		last = resp.Job
		if bar != nil {
			bar.update(last)
		} else if time.Since(lastLine) > 2*time.Second || terminal(last.State) {
			lastLine = time.Now()
			fmt.Fprintf(w, "%s %s: %s, %d rejects%s\n", shortKind(last.Kind), strings.TrimPrefix(last.State.String(), "JOB_STATE_"), progressText(last), last.GetProgress().GetRejects(), rateETA(last))
			if h := last.GetHealth(); h.GetConsecutiveFailures() > 0 {
				fmt.Fprintf(w, "  health: %s; last error: %s\n", healthSummary(last), h.GetLastError())
			}
		}
		if terminal(last.State) {
			break
		}
	}
	if bar != nil {
		bar.finish(last)
	}
	return last, nil
}

func shortKind(k migratorv1.JobKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "JOB_KIND_"))
}

func rateETA(j *migratorv1.Job) string {
	pr := j.GetProgress()
	s := ""
	if r := pr.GetItemsPerSecond(); r > 0 {
		s += fmt.Sprintf("  %.0f items/s", r)
	}
	if e := pr.GetEta(); e != nil && !terminal(j.State) {
		s += "  ETA " + e.AsDuration().Round(time.Second).String()
	}
	if l := pr.GetLag(); l != nil {
		s += "  lag " + l.AsDuration().Round(time.Millisecond).String()
	} else if j.Kind == migratorv1.JobKind_JOB_KIND_STREAM && !terminal(j.State) {
		s += "  lag unknown" // nothing read yet: not 0
	}
	return s
}

// healthSummary is a job's health in a few words: "ok", or "failing 3m
// (12 errors)" from failing_since to now (or to the job's end); "-" for
// jobs that do not report health.
func healthSummary(j *migratorv1.Job) string {
	h := j.GetHealth()
	if h.GetConsecutiveFailures() == 0 || h.GetFailingSince() == nil {
		if j.Kind != migratorv1.JobKind_JOB_KIND_STREAM || terminal(j.State) {
			return "-"
		}
		return "ok"
	}
	end := time.Now()
	if j.EndTime != nil {
		end = j.EndTime.AsTime()
	}
	d := max(end.Sub(h.GetFailingSince().AsTime()), 0).Round(time.Second)
	errs := "errors"
	if h.GetConsecutiveFailures() == 1 {
		errs = "error"
	}
	return fmt.Sprintf("failing %s (%d %s)", d, h.GetConsecutiveFailures(), errs)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// writePathName names an import's write path as --write-path does; the
// migrator records the path it chose, so "auto" shows only before it
// started.
func writePathName(p migratorv1.WritePath) string {
	switch p {
	case migratorv1.WritePath_WRITE_PATH_BATCH_WRITE:
		return "batch-write"
	case migratorv1.WritePath_WRITE_PATH_INGEST:
		return "ingest"
	}
	return "auto"
}

// report prints a job's final state: counts, duration, verify results and
// the first rejects.
func report(ctx context.Context, w io.Writer, c *conn, mc migratorv1.MigratorServiceClient, j *migratorv1.Job) error {
	if c.output != "table" {
		if err := c.print(w, j, nil); err != nil {
			return err
		}
		return verdict(j)
	}
	pr := j.GetProgress()
	fmt.Fprintf(w, "job %s (%s): %s\n", j.Id, shortKind(j.Kind), strings.TrimPrefix(j.State.String(), "JOB_STATE_"))
	if j.Error != "" && j.State != migratorv1.JobState_JOB_STATE_COMPLETED_WITH_ERRORS {
		fmt.Fprintf(w, "  error:            %s\n", j.Error)
	}
	if p := j.GetImportSpec().GetWritePath(); j.Kind == migratorv1.JobKind_JOB_KIND_IMPORT && j.GetImportSpec().GetExport() != nil {
		fmt.Fprintf(w, "  %-18s %s\n", "write path:", writePathName(p))
	}
	if j.Kind == migratorv1.JobKind_JOB_KIND_STREAM {
		fmt.Fprintf(w, "  %-18s %s\n", "health:", healthSummary(j))
		if h := j.GetHealth(); h.GetLastError() != "" {
			fmt.Fprintf(w, "  %-18s %s\n", "failing since:", fmtTime(h.GetFailingSince().AsTime()))
			fmt.Fprintf(w, "  %-18s %s (%s)\n", "last error:", h.GetLastError(), fmtTime(h.GetLastErrorTime().AsTime()))
		}
		lag := "unknown"
		if l := j.GetProgress().GetLag(); l != nil {
			lag = l.AsDuration().Round(time.Millisecond).String()
		}
		fmt.Fprintf(w, "  %-18s %s\n", "lag:", lag)
	}
	dur := "-"
	if j.StartTime != nil {
		end := time.Now()
		if j.EndTime != nil {
			end = j.EndTime.AsTime()
		}
		dur = end.Sub(j.StartTime.AsTime()).Round(time.Millisecond).String()
	}
	rows := [][]string{
		{"items written", strconv.FormatUint(pr.GetItemsWritten(), 10)},
		{"superseded", strconv.FormatUint(pr.GetItemsSuperseded(), 10) + " (Veltrix held a newer version; not written)"},
		{"deletes", strconv.FormatUint(pr.GetDeletes(), 10)},
		{"bytes read", strconv.FormatUint(pr.GetBytesRead(), 10)},
		{"rejects", strconv.FormatUint(pr.GetRejects(), 10)},
		{"skipped (expired)", strconv.FormatUint(pr.GetSkippedExpired(), 10)},
		{"filtered", strconv.FormatUint(pr.GetFiltered(), 10)},
		{"files", fmt.Sprintf("%d/%d", pr.GetFilesDone(), pr.GetFilesTotal())},
		{"duration", dur},
	}
	if vr := j.GetVerifyReport(); vr != nil {
		verdict := "FAILED"
		if vr.Passed {
			verdict = "PASSED"
		}
		rejects := strconv.FormatUint(vr.Rejects, 10)
		if vr.AcceptRejectsJob != "" {
			rejects += fmt.Sprintf(" (%d accepted as rejected by import %s)", vr.AcceptedRejects, vr.AcceptRejectsJob)
		}
		rows = append(rows,
			[]string{"verdict", verdict},
			[]string{"source items", strconv.FormatUint(vr.SourceItems, 10)},
			[]string{"compared", strconv.FormatUint(vr.Compared, 10)},
			[]string{"missing", strconv.FormatUint(vr.Missing, 10)},
			[]string{"different", strconv.FormatUint(vr.Different, 10)},
			[]string{"extra", strconv.FormatUint(vr.Extra, 10)},
			[]string{"unreadable", strconv.FormatUint(vr.Unreadable, 10)},
			[]string{"source rejects", rejects},
			[]string{"checksums", fmt.Sprintf("source %016x, target %016x", vr.SourceChecksum, vr.TargetChecksum)},
		)
	}
	for _, r := range rows {
		fmt.Fprintf(w, "  %-18s %s\n", r[0]+":", r[1])
	}
	if len(j.Problems) > 0 {
		fmt.Fprintln(w, "  problems:")
		for _, p := range j.Problems {
			mark := ""
			if p.Accepted {
				mark = " [accepted]"
			}
			fmt.Fprintf(w, "    %s%s\n", problemLine(p), mark)
		}
	}
	if vr := j.GetVerifyReport(); vr != nil && len(vr.Mismatches) > 0 {
		fmt.Fprintln(w, "  mismatches:")
		for i, m := range vr.Mismatches {
			if i == 20 {
				fmt.Fprintf(w, "    … %d more (veltrix jobs get %s --output json)\n", len(vr.Mismatches)-20, j.Id)
				break
			}
			key := "pk=" + show(m.PartitionKey) + " sk=" + show(m.SortKey)
			if m.Key != "" {
				key = "key=" + m.Key
			}
			fmt.Fprintf(w, "    %-9s %s %s\n", strings.TrimPrefix(m.Kind.String(), "MISMATCH_KIND_"), key, m.Detail)
		}
	}
	if pr.GetRejects() > 0 {
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		rj, err := mc.ListRejects(ctx, &migratorv1.ListRejectsRequest{JobId: j.Id, PageSize: 10})
		if err == nil {
			fmt.Fprintln(w, "  first rejects:")
			for _, r := range rj.Rejects {
				fmt.Fprintf(w, "    %s:%d: %s\n", r.Source, r.Line, r.Reason)
			}
			fmt.Fprintf(w, "  all rejects: veltrix jobs rejects %s\n", j.Id)
		}
	}
	return verdict(j)
}

// verdict turns a job's final state into the command's exit code (see
// exitCodes): 0 only for SUCCEEDED.
func verdict(j *migratorv1.Job) error {
	switch j.State {
	case migratorv1.JobState_JOB_STATE_PENDING, migratorv1.JobState_JOB_STATE_RUNNING:
		return nil // detached, or Ctrl-C: the job goes on
	case migratorv1.JobState_JOB_STATE_SUCCEEDED:
		// A migrator older than the verdict said SUCCEEDED for any verify
		// that ran to its end: never let a mismatch exit 0.
		if vr := j.GetVerifyReport(); vr != nil && vr.Missing+vr.Different+vr.Extra+vr.Unreadable > 0 {
			return withExit(exitIncomplete, fmt.Errorf("verify found %d mismatches (%d missing, %d different, %d extra) and %d unreadable items",
				vr.Missing+vr.Different+vr.Extra, vr.Missing, vr.Different, vr.Extra, vr.Unreadable))
		}
		return nil
	case migratorv1.JobState_JOB_STATE_COMPLETED_WITH_ERRORS:
		what := "lost source data"
		if j.Kind == migratorv1.JobKind_JOB_KIND_VERIFY {
			what = "failed its verdict"
		}
		var standing int
		for _, p := range j.Problems {
			if !p.Accepted {
				standing++
			}
		}
		return withExit(exitIncomplete, fmt.Errorf("job %s %s: %d problems (listed above; veltrix jobs get %s)", j.Id, what, standing, j.Id))
	case migratorv1.JobState_JOB_STATE_CANCELLED:
		return fmt.Errorf("job %s was cancelled", j.Id)
	}
	return fmt.Errorf("job %s %s: %s", j.Id, strings.ToLower(strings.TrimPrefix(j.State.String(), "JOB_STATE_")), j.Error)
}

// problemLine renders a job problem: "source: kind (N items): detail".
func problemLine(p *migratorv1.Problem) string {
	kind := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(p.Kind.String(), "PROBLEM_KIND_"), "_", " "))
	items := ""
	if p.Items > 0 {
		items = fmt.Sprintf(" (%d items)", p.Items)
	}
	return fmt.Sprintf("%s: %s%s: %s", p.Source, kind, items, p.Detail)
}

func jobsListCmd(c *conn) *cobra.Command {
	return leaf("list", "list jobs", 0, 0, func(cmd *cobra.Command, _ []string) error {
		return c.withMigrator(cmd, func(ctx context.Context, mc migratorv1.MigratorServiceClient) error {
			var resp *migratorv1.ListJobsResponse
			if err := c.call(ctx, func(ctx context.Context) (err error) {
				resp, err = mc.ListJobs(ctx, &migratorv1.ListJobsRequest{})
				return err
			}); err != nil {
				return explain(err, "list jobs")
			}
			w := cmd.OutOrStdout()
			return c.print(w, resp, func() error {
				var rows [][]string
				for _, j := range resp.Jobs {
					pr := j.GetProgress()
					rows = append(rows, []string{j.Id, shortKind(j.Kind), strings.TrimPrefix(j.State.String(), "JOB_STATE_"),
						fmt.Sprintf("%d/%d", processed(j), pr.GetItemsTotal()), strconv.FormatUint(pr.GetRejects(), 10), healthSummary(j), fmtTime(j.CreateTime.AsTime())})
				}
				return table(w, []string{"ID", "KIND", "STATE", "ITEMS", "REJECTS", "HEALTH", "CREATED"}, rows)
			})
		})
	})
}

// jobByIDCmd makes "veltrix jobs NAME JOB_ID", run by fn with a migrator
// client.
func jobByIDCmd(c *conn, name, short string, fn func(ctx context.Context, w io.Writer, c *conn, mc migratorv1.MigratorServiceClient, id string) error) *cobra.Command {
	return leaf(name+" JOB_ID", short, 1, 1, func(cmd *cobra.Command, pos []string) error {
		return c.withMigrator(cmd, func(ctx context.Context, mc migratorv1.MigratorServiceClient) error {
			return fn(ctx, cmd.OutOrStdout(), c, mc, pos[0])
		})
	})
}

func getJob(ctx context.Context, c *conn, mc migratorv1.MigratorServiceClient, id string) (*migratorv1.Job, error) {
	var resp *migratorv1.GetJobResponse
	if err := c.call(ctx, func(ctx context.Context) (err error) {
		resp, err = mc.GetJob(ctx, &migratorv1.GetJobRequest{Id: id})
		return err
	}); err != nil {
		return nil, explain(err, "get job")
	}
	return resp.Job, nil
}

func jobsGet(ctx context.Context, w io.Writer, c *conn, mc migratorv1.MigratorServiceClient, id string) error {
	j, err := getJob(ctx, c, mc, id)
	if err != nil {
		return err
	}
	return report(ctx, w, c, mc, j)
}

func jobsWatch(ctx context.Context, w io.Writer, c *conn, mc migratorv1.MigratorServiceClient, id string) error {
	j, err := getJob(ctx, c, mc, id)
	if err != nil {
		return err
	}
	return follow(ctx, w, c, mc, j, false)
}

func jobsCancel(ctx context.Context, w io.Writer, c *conn, mc migratorv1.MigratorServiceClient, id string) error {
	var resp *migratorv1.CancelJobResponse
	if err := c.call(ctx, func(ctx context.Context) (err error) {
		resp, err = mc.CancelJob(ctx, &migratorv1.CancelJobRequest{Id: id})
		return err
	}); err != nil {
		return explain(err, "cancel job")
	}
	return c.print(w, resp.Job, func() error {
		_, err := fmt.Fprintf(w, "job %s: %s\n", id, strings.TrimPrefix(resp.Job.State.String(), "JOB_STATE_"))
		return err
	})
}

// jobsRetryCmd runs a FAILED, COMPLETED_WITH_ERRORS or CANCELLED job again
// under its id and follows it as import does (--detach returns at once).
func jobsRetryCmd(c *conn) *cobra.Command {
	var detach bool
	cmd := leaf("retry JOB_ID", "run a failed, incomplete or cancelled job again under its id and follow it", 1, 1, func(cmd *cobra.Command, pos []string) error {
		return c.withMigrator(cmd, func(ctx context.Context, mc migratorv1.MigratorServiceClient) error {
			var resp *migratorv1.RetryJobResponse
			if err := c.call(ctx, func(ctx context.Context) (err error) {
				resp, err = mc.RetryJob(ctx, &migratorv1.RetryJobRequest{Id: pos[0]})
				return err
			}); err != nil {
				return explain(err, "retry job")
			}
			w := cmd.OutOrStdout()
			if c.output == "table" {
				fmt.Fprintf(w, "job %s: attempt %d\n", resp.Job.Id, resp.Job.Attempts)
			}
			return follow(ctx, w, c, mc, resp.Job, detach)
		})
	})
	cmd.Flags().BoolVar(&detach, "detach", false, "retry the job and return without watching it")
	return cmd
}

func jobsRejects(ctx context.Context, w io.Writer, c *conn, mc migratorv1.MigratorServiceClient, id string) error {
	var all []*migratorv1.Reject
	token := ""
	for {
		var resp *migratorv1.ListRejectsResponse
		if err := c.call(ctx, func(ctx context.Context) (err error) {
			resp, err = mc.ListRejects(ctx, &migratorv1.ListRejectsRequest{JobId: id, PageToken: token, PageSize: 1000})
			return err
		}); err != nil {
			return explain(err, "list rejects")
		}
		all = append(all, resp.Rejects...)
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	return c.print(w, &migratorv1.ListRejectsResponse{Rejects: all}, func() error {
		var rows [][]string
		for _, r := range all {
			rows = append(rows, []string{r.Source, strconv.FormatUint(r.Line, 10), r.Reason})
		}
		return table(w, []string{"SOURCE", "LINE", "REASON"}, rows)
	})
}
