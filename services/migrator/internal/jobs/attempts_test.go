package jobs

import (
	"context"
	"hash/crc32"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/migrator/internal/awsconf"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc/checkpoint"
	"github.com/veltrixdb/veltrix/services/migrator/internal/export"
	"github.com/veltrixdb/veltrix/services/migrator/internal/scan"
	"github.com/veltrixdb/veltrix/services/migrator/internal/testexport"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// downRouter is a router whose tables exist and whose every BatchWrite
// fails with Unavailable; it counts the BatchWrite calls that reach it.
type downRouter struct {
	kvv1.UnimplementedKVServiceServer
	kvv1.UnimplementedAdminServiceServer
	writes atomic.Int64
}

func (r *downRouter) BatchWrite(context.Context, *kvv1.BatchWriteRequest) (*kvv1.BatchWriteResponse, error) {
	r.writes.Add(1)
	return nil, status.Error(codes.Unavailable, "no quorum")
}

func (r *downRouter) DescribeTable(_ context.Context, req *kvv1.DescribeTableRequest) (*kvv1.DescribeTableResponse, error) {
	return &kvv1.DescribeTableResponse{Table: &kvv1.Table{Name: req.GetName()}}, nil
}

func startDownRouter(t *testing.T) (*downRouter, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &downRouter{}
	srv := grpc.NewServer()
	kvv1.RegisterKVServiceServer(srv, r)
	kvv1.RegisterAdminServiceServer(srv, r)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return r, ln.Addr().String()
}

// writeAttempts is the number of BatchWrite calls writeBackoff allows
// within retryFor: attempt n starts after the waits before it, and the
// first attempt failing after retryFor is the last.
func writeAttempts(retryFor time.Duration) int {
	var elapsed time.Duration
	n := 1
	for elapsed <= retryFor {
		elapsed += writeBackoff(n)
		n++
	}
	return n
}

// TestWriteAttempts imports one item into a router that is down, through
// the clients the migrator dials (DialRouters): the batch is sent exactly
// as often as the write loop's policy says (writeBackoff within
// --write-retry), each attempt one call. A client retrying under the loop
// would multiply the count (it was 11 with pkg/client's 10 retries).
func TestWriteAttempts(t *testing.T) {
	router, addr := startDownRouter(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	target, direct, err := DialRouters(ctx, []string{addr})
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	defer direct.Close()

	const retryFor = 900 * time.Millisecond
	store := newStore(t)
	env := &Env{Store: store, Target: target, Direct: direct, ID: "a", Logger: testLogger(t), PollInterval: 50 * time.Millisecond,
		WriteRetry: retryFor, AWSConfig: staticAWS}
	mgr, err := StartManager(env, ManagerOptions{SessionTTL: 2 * time.Second, RescanInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer mgr.Close()
	dir := filepath.Join(t.TempDir(), "export")
	if _, err := testexport.Write(dir, testexport.Options{}, testexport.File{Lines: goodLines("r", 1)}); err != nil {
		t.Fatal(err)
	}
	job := createJob(t, store, importJob(dir, nil))
	got := waitJob(t, store, job.GetId(), 30*time.Second)
	if got.GetState() != migratorv1.JobState_JOB_STATE_FAILED || !strings.Contains(got.GetError(), "writes to Veltrix failed") {
		t.Fatalf("import into a router that is down: %s %q, want FAILED on writes", got.GetState(), got.GetError())
	}
	if n, want := router.writes.Load(), int64(writeAttempts(retryFor)); n != want {
		t.Fatalf("%d BatchWrite calls for one batch, want %d (1 + %d retries within %s)", n, want, want-1, retryFor)
	}
}

// TestScanAttempts scans a DynamoDB endpoint whose every Scan fails with
// InternalServerError, through the client and options a table-scan job
// uses: 1 + scan.Options.MaxRetries calls, each one attempt. AWS_MAX_ATTEMPTS
// in the environment must not put the SDK's retryer back under the loop
// (with the SDK's default 3 attempts it was 33).
func TestScanAttempts(t *testing.T) {
	isolateAWS(t, "AKIDTEST", "secret")
	t.Setenv("AWS_MAX_ATTEMPTS", "5")
	var calls atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".Scan") {
			calls.Add(1)
		}
		body := []byte(`{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"boom"}`)
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.Header().Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 10))
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write(body)
	}))
	defer ts.Close()

	e := &Env{AWSConfig: LoadAWSConfig, Logger: testLogger(t), StreamOptions: cdc.Options{MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}}
	ctx := context.Background()
	src := &migratorv1.TableScanSource{TableName: "sessions", Segments: 1, Aws: &migratorv1.AwsOptions{Endpoint: ts.URL}}
	cli, err := e.dynamoDBClient(ctx, src.GetAws())
	if err != nil {
		t.Fatal(err)
	}
	opts := e.scanOptions(src, "job")
	s, err := scan.New(cli, src.GetTableName(), checkpoint.NewMemory(), opts)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run(ctx, func(context.Context, scan.Page) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("scan of a failing endpoint: %v", err)
	}
	opts.EnsureDefaults()
	if n, want := calls.Load(), int64(1+opts.MaxRetries); n != want {
		t.Fatalf("%d Scan calls, want %d (1 + %d retries by the scan, one SDK attempt each)", n, want, opts.MaxRetries)
	}
}

// TestS3Attempts imports from S3 whose data objects always fail with a
// 500: each GetObject is retried by the SDK's standard retryer alone
// (awsconf.SDKAttempts calls), then the job fails; the import's retry of a
// data file does not retry it again (it was 5 × 3 = 15 calls).
func TestS3Attempts(t *testing.T) {
	dir := isolateAWS(t, "AKIDTEST", "secret")
	var gets atomic.Int64
	s3srv := gofakes3.New(s3mem.New()).Server()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/data/") {
			if r.Header.Get("Range") == "" { // not the size estimate's read of the end
				gets.Add(1)
			}
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>boom</Message></Error>`))
			return
		}
		s3srv.ServeHTTP(w, r)
	}))
	defer ts.Close()
	ctx := context.Background()
	cli, err := export.NewS3Client(ctx, export.AWSOptions{Endpoint: ts.URL, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("exports")}); err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(dir, "export")
	if _, err := testexport.Write(local, testexport.Options{}, testexport.File{Lines: goodLines("r", 3)}); err != nil {
		t.Fatal(err)
	}
	uploadExport(t, cli, local, "exports", "sessions/")

	store := newStore(t)
	startMigrator(t, store, newFake(), "a")
	job := createJob(t, store, importJob("s3://exports/sessions", func(s *migratorv1.ImportSpec) {
		s.GetExport().Aws = &migratorv1.AwsOptions{Endpoint: ts.URL, S3PathStyle: true}
	}))
	got := waitJob(t, store, job.GetId(), 60*time.Second)
	if got.GetState() != migratorv1.JobState_JOB_STATE_FAILED || !strings.Contains(got.GetError(), "boom") {
		t.Fatalf("import from failing S3: %s %q, want FAILED with the S3 error", got.GetState(), got.GetError())
	}
	if n := gets.Load(); n != awsconf.SDKAttempts {
		t.Fatalf("%d GetObject calls of the data file, want %d (the SDK's attempts, not retried again)", n, awsconf.SDKAttempts)
	}
}
