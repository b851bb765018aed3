package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/veltrixdb/veltrix/pkg/svcmain"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/migrator/internal/jobs"
	"github.com/veltrixdb/veltrix/services/migrator/internal/mapping"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Page sizes of ListJobs and ListRejects.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
	maxParallelism  = 256
	maxSegments     = 1_000_000
)

type service struct {
	migratorv1.UnimplementedMigratorServiceServer
	s *Server
}

// toStatus converts an error to a gRPC status at the edge.
func toStatus(err error) error { return svcmain.ToStatus(err, code) }

// code maps the migrator's errors; etcd's own errors (no leader, too many
// requests) keep the code etcd gave them.
func code(err error) codes.Code {
	var etcdErr rpctypes.EtcdError
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, jobs.ErrExists):
		return codes.AlreadyExists
	case errors.Is(err, jobs.ErrFinished), errors.Is(err, jobs.ErrNotRetryable):
		return codes.FailedPrecondition
	case errors.Is(err, jobs.ErrInvalid):
		return codes.InvalidArgument
	case errors.As(err, &etcdErr):
		return etcdErr.Code()
	}
	return codes.Unknown
}

func invalid(problems []string) error {
	return status.Error(codes.InvalidArgument, strings.Join(problems, "; "))
}

// checkAWS validates AWS options: a credentials file is a path on the
// migrator's host, so a relative one would depend on the migrator's
// working directory.
func checkAWS(o *migratorv1.AwsOptions, field string, problems *[]string) {
	if f := o.GetCredentialsFile(); f != "" && !filepath.IsAbs(f) {
		*problems = append(*problems, fmt.Sprintf("%s.credentials_file: %q: want an absolute path on the migrator's host", field, f))
	}
}

// checkExport validates an export source.
func checkExport(src *migratorv1.ExportSource, field string, problems *[]string) {
	if src.GetUri() == "" {
		*problems = append(*problems, field+".uri: required (s3://bucket/prefix or a directory)")
	}
	checkAWS(src.GetAws(), field+".aws", problems)
	if _, ok := migratorv1.ExportFormat_name[int32(src.GetFormat())]; !ok {
		*problems = append(*problems, fmt.Sprintf("%s.format: unknown format %d", field, src.GetFormat()))
	}
}

// checkTableScan validates a live-table source.
func checkTableScan(src *migratorv1.TableScanSource, field string, problems *[]string) {
	if src.GetTableName() == "" {
		*problems = append(*problems, field+".table_name: required")
	}
	checkAWS(src.GetAws(), field+".aws", problems)
	if n := src.GetSegments(); n > maxSegments {
		*problems = append(*problems, fmt.Sprintf("%s.segments: %d: at most %d (DynamoDB's TotalSegments limit)", field, n, maxSegments))
	}
	if r := src.GetReadCapacityPerSecond(); r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
		*problems = append(*problems, fmt.Sprintf("%s.read_capacity_per_second: %v: want 0 (no cap) or a positive rate", field, r))
	}
}

func checkMapping(m *migratorv1.Mapping, problems *[]string) {
	if _, err := mapping.FromProto(m, "spec.mapping"); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			*problems = append(*problems, line)
		}
	}
}

func newJobID(kind string) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	return kind + "-" + time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(r[:])
}

func (sv *service) create(ctx context.Context, id, kind string, j *migratorv1.Job) (*migratorv1.Job, error) {
	if id == "" {
		id = newJobID(kind)
	} else if err := jobs.ValidateID(id); err != nil {
		return nil, status.Error(codes.InvalidArgument, "job_id: "+err.Error())
	}
	j.Id = id
	j.State = migratorv1.JobState_JOB_STATE_PENDING
	j.CreateTime = timestamppb.Now()
	j.Progress = &migratorv1.Progress{}
	j.Attempts = 1
	got, existed, err := sv.s.store.Create(ctx, j)
	if err != nil {
		return nil, toStatus(err)
	}
	if existed {
		sv.s.logger.Info("job already exists", "job", id)
	} else {
		sv.s.logger.Info("job created", "job", id, "kind", j.GetKind())
	}
	return sv.view(ctx, got)
}

// view returns a job with its live progress, owners, rate and ETA.
func (sv *service) view(ctx context.Context, j *migratorv1.Job) (*migratorv1.Job, error) {
	agg, err := sv.s.store.Aggregate(ctx, j)
	if err != nil {
		return nil, toStatus(err)
	}
	sv.s.rates.Apply(agg, time.Now())
	return agg, nil
}

func (sv *service) StartImport(ctx context.Context, req *migratorv1.StartImportRequest) (*migratorv1.StartImportResponse, error) {
	spec := req.GetSpec()
	var problems []string
	switch {
	case spec == nil:
		return nil, invalid([]string{"spec: required"})
	case spec.GetTableScan() != nil:
		checkTableScan(spec.GetTableScan(), "spec.table_scan", &problems)
	case spec.GetExport() == nil:
		problems = append(problems, "spec.export or spec.table_scan: required")
	default:
		checkExport(spec.GetExport(), "spec.export", &problems)
	}
	checkMapping(spec.GetMapping(), &problems)
	if ips := spec.GetItemsPerSecond(); ips < 0 || math.IsNaN(ips) || math.IsInf(ips, 0) {
		problems = append(problems, fmt.Sprintf("spec.items_per_second: %v: want 0 (unlimited) or a positive rate", ips))
	}
	if p := spec.GetParallelism(); p > maxParallelism {
		problems = append(problems, fmt.Sprintf("spec.parallelism: %d: at most %d", p, maxParallelism))
	}
	if b := spec.GetBatchSize(); b > jobs.MaxBatchSize {
		problems = append(problems, fmt.Sprintf("spec.batch_size: %d: at most %d (the router's BatchWrite limit)", b, jobs.MaxBatchSize))
	}
	if len(problems) > 0 {
		return nil, invalid(problems)
	}
	j, err := sv.create(ctx, req.GetJobId(), "import", &migratorv1.Job{
		Kind: migratorv1.JobKind_JOB_KIND_IMPORT,
		Spec: &migratorv1.Job_ImportSpec{ImportSpec: proto.Clone(spec).(*migratorv1.ImportSpec)},
	})
	if err != nil {
		return nil, err
	}
	sv.s.mgr.Wake()
	return &migratorv1.StartImportResponse{Job: j}, nil
}

func (sv *service) StartVerify(ctx context.Context, req *migratorv1.StartVerifyRequest) (*migratorv1.StartVerifyResponse, error) {
	spec := req.GetSpec()
	var problems []string
	switch {
	case spec == nil:
		return nil, invalid([]string{"spec: required"})
	case spec.GetTableScan() != nil:
		checkTableScan(spec.GetTableScan(), "spec.table_scan", &problems)
	case spec.GetExport() == nil:
		problems = append(problems, "spec.export or spec.table_scan: required")
	default:
		checkExport(spec.GetExport(), "spec.export", &problems)
	}
	checkMapping(spec.GetMapping(), &problems)
	if f := spec.GetSampleFraction(); f < 0 || f > 1 || math.IsNaN(f) {
		problems = append(problems, fmt.Sprintf("spec.sample_fraction: %v: want 0 to 1", f))
	}
	if len(problems) > 0 {
		return nil, invalid(problems)
	}
	j, err := sv.create(ctx, req.GetJobId(), "verify", &migratorv1.Job{
		Kind: migratorv1.JobKind_JOB_KIND_VERIFY,
		Spec: &migratorv1.Job_VerifySpec{VerifySpec: proto.Clone(spec).(*migratorv1.VerifySpec)},
	})
	if err != nil {
		return nil, err
	}
	sv.s.mgr.Wake()
	return &migratorv1.StartVerifyResponse{Job: j}, nil
}

func (sv *service) StartStream(ctx context.Context, req *migratorv1.StartStreamRequest) (*migratorv1.StartStreamResponse, error) {
	spec := req.GetSpec()
	if spec == nil {
		return nil, invalid([]string{"spec: required"})
	}
	var problems []string
	switch spec.GetKind() {
	case migratorv1.StreamKind_STREAM_KIND_DYNAMODB_STREAMS, migratorv1.StreamKind_STREAM_KIND_KINESIS:
	default:
		problems = append(problems, fmt.Sprintf("spec.kind: %s: want STREAM_KIND_DYNAMODB_STREAMS or STREAM_KIND_KINESIS", spec.GetKind()))
	}
	if spec.GetStream() == "" {
		problems = append(problems, "spec.stream: required (a DynamoDB stream ARN or table name, or a Kinesis stream name or ARN)")
	}
	switch spec.GetStart() {
	case migratorv1.StartPosition_START_POSITION_UNSPECIFIED, migratorv1.StartPosition_START_POSITION_TRIM_HORIZON,
		migratorv1.StartPosition_START_POSITION_LATEST:
		if spec.GetShardId() != "" || spec.GetSequenceNumber() != "" {
			problems = append(problems, fmt.Sprintf("spec.shard_id, spec.sequence_number: only with the *_SEQUENCE_NUMBER starts, not %s", spec.GetStart()))
		}
	case migratorv1.StartPosition_START_POSITION_AT_SEQUENCE_NUMBER, migratorv1.StartPosition_START_POSITION_AFTER_SEQUENCE_NUMBER:
		if spec.GetShardId() == "" || spec.GetSequenceNumber() == "" {
			problems = append(problems, fmt.Sprintf("spec.shard_id, spec.sequence_number: both required with %s", spec.GetStart()))
		}
	default:
		problems = append(problems, fmt.Sprintf("spec.start: unknown start position %d", spec.GetStart()))
	}
	checkMapping(spec.GetMapping(), &problems)
	checkAWS(spec.GetAws(), "spec.aws", &problems)
	if b := spec.GetBatchSize(); b > jobs.MaxBatchSize {
		problems = append(problems, fmt.Sprintf("spec.batch_size: %d: at most %d (the router's BatchWrite limit)", b, jobs.MaxBatchSize))
	}
	if d := spec.GetFailAfter(); d != nil && (d.CheckValid() != nil || d.AsDuration() < 0) {
		problems = append(problems, fmt.Sprintf("spec.fail_after: %s: want a positive duration (unset means %s)", d.AsDuration(), jobs.DefaultFailAfter))
	}
	if len(problems) > 0 {
		return nil, invalid(problems)
	}
	j, err := sv.create(ctx, req.GetJobId(), "stream", &migratorv1.Job{
		Kind: migratorv1.JobKind_JOB_KIND_STREAM,
		Spec: &migratorv1.Job_StreamSpec{StreamSpec: proto.Clone(spec).(*migratorv1.StreamSpec)},
	})
	if err != nil {
		return nil, err
	}
	sv.s.mgr.Wake()
	return &migratorv1.StartStreamResponse{Job: j}, nil
}

func (sv *service) get(ctx context.Context, id string) (*migratorv1.Job, error) {
	return sv.getField(ctx, id, "id")
}

func (sv *service) getField(ctx context.Context, id, field string) (*migratorv1.Job, error) {
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, field+": required")
	}
	j, err := sv.s.store.Get(ctx, id)
	if errors.Is(err, jobs.ErrInvalid) {
		return nil, status.Error(codes.NotFound, err.Error())
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return j, nil
}

func (sv *service) GetJob(ctx context.Context, req *migratorv1.GetJobRequest) (*migratorv1.GetJobResponse, error) {
	j, err := sv.get(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	if j, err = sv.view(ctx, j); err != nil {
		return nil, err
	}
	return &migratorv1.GetJobResponse{Job: j}, nil
}

// List page tokens are the create time (Unix nanoseconds) and id of the
// last job returned; the next page starts after it in newest-first order.
func (sv *service) ListJobs(ctx context.Context, req *migratorv1.ListJobsRequest) (*migratorv1.ListJobsResponse, error) {
	size := int(req.GetPageSize())
	switch {
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	var afterNanos int64
	var afterID string
	if tok := req.GetPageToken(); tok != "" {
		ns, id, ok := strings.Cut(tok, "/")
		n, err := strconv.ParseInt(ns, 10, 64)
		if !ok || err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "page_token: %q is not a token from ListJobs", tok)
		}
		afterNanos, afterID = n, id
	}
	all, err := sv.s.store.List(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &migratorv1.ListJobsResponse{}
	for _, j := range all {
		if k := req.GetKind(); k != migratorv1.JobKind_JOB_KIND_UNSPECIFIED && j.GetKind() != k {
			continue
		}
		ns := j.GetCreateTime().AsTime().UnixNano()
		if req.GetPageToken() != "" && (ns > afterNanos || ns == afterNanos && j.GetId() >= afterID) {
			continue
		}
		if len(resp.Jobs) == size {
			last := resp.Jobs[len(resp.Jobs)-1]
			resp.NextPageToken = fmt.Sprintf("%d/%s", last.GetCreateTime().AsTime().UnixNano(), last.GetId())
			break
		}
		v, err := sv.view(ctx, j)
		if err != nil {
			return nil, err
		}
		resp.Jobs = append(resp.Jobs, v)
	}
	return resp, nil
}

// WatchJob sends the job now, then whenever any of its keys changes (at
// most every 200ms) and every second while it runs (for the rate and
// ETA), and ends after sending it in a terminal state.
func (sv *service) WatchJob(req *migratorv1.WatchJobRequest, stream migratorv1.MigratorService_WatchJobServer) error {
	ctx := stream.Context()
	j, err := sv.get(ctx, req.GetId())
	if err != nil {
		return err
	}
	changed, unsubscribe := sv.s.mgr.Subscribe(req.GetId())
	defer unsubscribe()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		v, err := sv.view(ctx, j)
		if err != nil {
			return err
		}
		if err := stream.Send(&migratorv1.WatchJobResponse{Job: v}); err != nil {
			return err
		}
		if jobs.Terminal(v.GetState()) {
			return nil
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-sv.s.stopping:
			return status.Error(codes.Unavailable, "migrator shutting down; watch again (any migrator serves any job)")
		case <-ctx.Done():
			return toStatus(ctx.Err())
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return toStatus(ctx.Err())
		}
		if j, err = sv.get(ctx, req.GetId()); err != nil {
			return err
		}
	}
}

func (sv *service) CancelJob(ctx context.Context, req *migratorv1.CancelJobRequest) (*migratorv1.CancelJobResponse, error) {
	if _, err := sv.get(ctx, req.GetId()); err != nil {
		return nil, err
	}
	j, err := sv.s.store.Finish(ctx, req.GetId(), migratorv1.JobState_JOB_STATE_CANCELLED, "", time.Now(), nil)
	if err != nil {
		return nil, toStatus(err)
	}
	sv.s.logger.Info("job cancelled", "job", j.GetId())
	if j, err = sv.view(ctx, j); err != nil {
		return nil, err
	}
	return &migratorv1.CancelJobResponse{Job: j}, nil
}

// RetryJob runs a FAILED, COMPLETED_WITH_ERRORS or CANCELLED job again
// under its id (see jobs.Store.Retry for what is kept).
func (sv *service) RetryJob(ctx context.Context, req *migratorv1.RetryJobRequest) (*migratorv1.RetryJobResponse, error) {
	if _, err := sv.get(ctx, req.GetId()); err != nil {
		return nil, err
	}
	j, err := sv.s.store.Retry(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	sv.s.logger.Info("job retried", "job", j.GetId(), "attempt", j.GetAttempts())
	sv.s.mgr.Wake()
	if j, err = sv.view(ctx, j); err != nil {
		return nil, err
	}
	return &migratorv1.RetryJobResponse{Job: j}, nil
}

func (sv *service) ListRejects(ctx context.Context, req *migratorv1.ListRejectsRequest) (*migratorv1.ListRejectsResponse, error) {
	if _, err := sv.getField(ctx, req.GetJobId(), "job_id"); err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	rs, next, err := sv.s.store.ListRejects(ctx, req.GetJobId(), size, req.GetPageToken())
	if err != nil {
		return nil, toStatus(err)
	}
	return &migratorv1.ListRejectsResponse{Rejects: rs, NextPageToken: next}, nil
}
