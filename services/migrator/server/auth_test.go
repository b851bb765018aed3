package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/auth"
	"github.com/veltrixdb/veltrix/pkg/etcdembed"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestAuthRulesCoverEveryMethod: every method the migrator serves has a
// permission rule.
func TestAuthRulesCoverEveryMethod(t *testing.T) {
	sv := &service{}
	g, err := auth.NewGuard(auth.GuardOptions{Rules: sv.authRules()})
	if err != nil {
		t.Fatal(err)
	}
	srv := grpcx.NewServer(grpcx.ServerOptions{})
	defer srv.Stop()
	migratorv1.RegisterMigratorServiceServer(srv.Server, sv)
	if missing := g.Missing(srv.GetServiceInfo()); len(missing) != 0 {
		t.Fatalf("methods without a rule: %v", missing)
	}
	if n := len(sv.authRules()); n != len(migratorv1.MigratorService_ServiceDesc.Methods)+len(migratorv1.MigratorService_ServiceDesc.Streams) {
		t.Fatalf("%d rules for %d methods", n, len(migratorv1.MigratorService_ServiceDesc.Methods)+len(migratorv1.MigratorService_ServiceDesc.Streams))
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestAuth: with --auth, job calls need a level on the job's table: a key
// with write on aaa starts and cancels an import into aaa but cannot list
// every job; a key with read on bbb cannot see it; no token is
// Unauthenticated; a revoked key is refused within a second; refusals are
// audited.
func TestAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an embedded etcd; CI runs it without -short")
	}
	e, err := etcdembed.Start(etcdembed.Config{Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cli, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(&logs, t.Output()), &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx := t.Context()
	st, err := auth.NewStore(ctx, cli, "mauth", make([]byte, auth.SealKeySize), nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	token := func(name string, grants ...auth.Grant) (string, string) {
		if _, err := st.SetGrants(ctx, name, grants); err != nil {
			t.Fatal(err)
		}
		k, err := st.CreateKey(ctx, name, "test")
		if err != nil {
			t.Fatal(err)
		}
		return k.ID, k.Token()
	}
	writerID, writer := token("writer", auth.Grant{Table: "aaa", Level: auth.Write})
	_, reader := token("reader", auth.Grant{Table: "bbb", Level: auth.Read})

	// A "router" serving nothing: jobs fail, which the calls below do not
	// mind.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadRouter := ln.Addr().String()
	fake := grpc.NewServer()
	go func() { _ = fake.Serve(ln) }()
	defer fake.Stop()
	s, err := Start(ctx, Config{ID: "m1", ListenAddr: "127.0.0.1:0", Cluster: "mauth", EtcdClient: cli,
		RouterEndpoints: []string{deadRouter}, WriteRetry: time.Second, Logger: logger,
		Auth: AuthConfig{Enabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cc, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	m := migratorv1.NewMigratorServiceClient(cc)
	as := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	check := func(what string, err error, want codes.Code, inMsg ...string) {
		t.Helper()
		if status.Code(err) != want {
			t.Fatalf("%s: %v, want %v", what, err, want)
		}
		for _, s := range inMsg {
			if !strings.Contains(status.Convert(err).Message(), s) {
				t.Errorf("%s: message %q lacks %q", what, status.Convert(err).Message(), s)
			}
		}
	}
	spec := func(table string, create bool) *migratorv1.ImportSpec {
		return &migratorv1.ImportSpec{
			Source: &migratorv1.ImportSpec_Export{Export: &migratorv1.ExportSource{Uri: "file://" + t.TempDir()}},
			Mapping: &migratorv1.Mapping{TargetTable: table, CreateTable: create,
				PartitionKey: &migratorv1.KeyAttribute{Name: "pk", Type: migratorv1.KeyType_KEY_TYPE_S}},
		}
	}

	_, err = m.StartImport(ctx, &migratorv1.StartImportRequest{Spec: spec("aaa", false)})
	check("StartImport without a token", err, codes.Unauthenticated, "missing credentials")
	_, err = m.StartImport(as(reader), &migratorv1.StartImportRequest{Spec: spec("aaa", false)})
	check("reader StartImport aaa", err, codes.PermissionDenied, `"reader"`, "write", `"aaa"`, "StartImport")
	_, err = m.StartImport(as(writer), &migratorv1.StartImportRequest{Spec: spec("aaa", true)})
	check("writer StartImport aaa creating it", err, codes.PermissionDenied, "admin")
	started, err := m.StartImport(as(writer), &migratorv1.StartImportRequest{Spec: spec("aaa", false), JobId: "imp-aaa"})
	check("writer StartImport aaa", err, codes.OK)
	id := started.GetJob().GetId()

	_, err = m.GetJob(as(writer), &migratorv1.GetJobRequest{Id: id})
	check("writer GetJob", err, codes.OK)
	_, err = m.GetJob(as(reader), &migratorv1.GetJobRequest{Id: id})
	check("reader GetJob of an aaa job", err, codes.PermissionDenied, `"aaa"`, "read")
	_, err = m.ListRejects(as(reader), &migratorv1.ListRejectsRequest{JobId: id})
	check("reader ListRejects", err, codes.PermissionDenied)
	w, err := m.WatchJob(as(reader), &migratorv1.WatchJobRequest{Id: id})
	if err == nil {
		_, err = w.Recv()
	}
	check("reader WatchJob", err, codes.PermissionDenied)
	w, err = m.WatchJob(as(writer), &migratorv1.WatchJobRequest{Id: id})
	if err == nil {
		var resp *migratorv1.WatchJobResponse
		resp, err = w.Recv()
		if err == nil && resp.GetJob().GetId() != id {
			t.Fatalf("writer WatchJob: %v", resp)
		}
	}
	check("writer WatchJob", err, codes.OK)
	_, err = m.ListJobs(as(writer), &migratorv1.ListJobsRequest{})
	check("writer ListJobs", err, codes.PermissionDenied, `"*"`)
	_, err = m.CancelJob(as(reader), &migratorv1.CancelJobRequest{Id: id})
	check("reader CancelJob", err, codes.PermissionDenied, "write")
	_, err = m.GetJob(as(writer), &migratorv1.GetJobRequest{Id: "no-such-job"})
	check("GetJob of a missing job", err, codes.NotFound)
	_, err = m.CancelJob(as(writer), &migratorv1.CancelJobRequest{Id: id})
	if status.Code(err) != codes.OK && status.Code(err) != codes.FailedPrecondition { // it may have failed already
		t.Fatalf("writer CancelJob: %v", err)
	}

	if err := st.RevokeKey(ctx, writerID); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	for {
		_, err := m.GetJob(as(writer), &migratorv1.GetJobRequest{Id: id})
		if status.Code(err) == codes.Unauthenticated {
			break
		}
		if time.Since(begin) > time.Second {
			t.Fatalf("revoked key still accepted after a second: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	out := logs.String()
	for _, want := range []string{
		`outcome=denied subject=reader via=token`,
		`op=/veltrix.migrator.v1.MigratorService/StartImport table=aaa need=write reason="lacks permission"`,
		`op=/veltrix.migrator.v1.MigratorService/StartImport table="" need=none reason="missing credentials"`,
		`reason="unknown or revoked API key \"` + writerID + `\""`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("audit log lacks %q", want)
		}
	}
}
