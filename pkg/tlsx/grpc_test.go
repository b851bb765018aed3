package tlsx

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestGRPC: the credentials over gRPC, the identity of the caller, and a
// plaintext client refused.
func TestGRPC(t *testing.T) {
	dir := t.TempDir()
	p, err := WriteDevPKI(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := loadT(t, p.Storage, "tls")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var seen Identity
	gs := grpc.NewServer(grpc.Creds(srv.ServerCredentials(RequireService, RoleRouter)),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			seen, _ = PeerIdentity(ctx)
			return h(ctx, req)
		}))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()

	check := func(opt grpc.DialOption) error {
		cc, err := grpc.NewClient(ln.Addr().String(), opt)
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	router := loadT(t, p.Router, "tls")
	if err := check(grpc.WithTransportCredentials(router.ClientCredentials())); err != nil {
		t.Fatalf("router: %v", err)
	}
	if seen.Role != RoleRouter {
		t.Fatalf("peer identity %v", seen)
	}
	if err := check(grpc.WithTransportCredentials(insecure.NewCredentials())); err == nil {
		t.Fatal("plaintext client accepted")
	}
	admin := loadT(t, p.Admin, "")
	if err := check(grpc.WithTransportCredentials(admin.ClientCredentials())); err == nil {
		t.Fatal("principal certificate accepted by RequireService")
	}
}
