package server

import (
	"testing"

	"github.com/veltrixdb/veltrix/pkg/auth"
	"github.com/veltrixdb/veltrix/pkg/grpcx"
	authv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/auth/v1"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
)

// TestAuthRulesCoverEveryMethod: every method the router serves has a
// permission rule (the guard refuses the others), health and reflection
// aside.
func TestAuthRulesCoverEveryMethod(t *testing.T) {
	g, err := auth.NewGuard(auth.GuardOptions{Rules: authRules()})
	if err != nil {
		t.Fatal(err)
	}
	srv := grpcx.NewServer(grpcx.ServerOptions{})
	defer srv.Stop()
	kvv1.RegisterKVServiceServer(srv.Server, &kvService{})
	kvv1.RegisterAdminServiceServer(srv.Server, &adminService{})
	migrationv1.RegisterMigrationServiceServer(srv.Server, &migrationService{})
	authv1.RegisterAuthServiceServer(srv.Server, &authService{})
	info := srv.GetServiceInfo()
	if len(info) < 6 {
		t.Fatalf("services: %v", info)
	}
	if missing := g.Missing(info); len(missing) != 0 {
		t.Fatalf("methods without a rule: %v", missing)
	}
	// And no rule names a method that does not exist.
	methods := map[string]bool{}
	for svc, si := range info {
		for _, m := range si.Methods {
			methods["/"+svc+"/"+m.Name] = true
		}
	}
	for m := range authRules() {
		if !methods[m] {
			t.Errorf("rule for unknown method %s", m)
		}
	}
}
