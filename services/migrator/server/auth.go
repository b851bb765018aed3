package server

import (
	"context"
	"fmt"

	"github.com/veltrixdb/veltrix/pkg/auth"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
)

// AuthConfig configures authentication and per-table permissions
// (docs/design.md, "Security: authentication and permissions"). The
// principals and keys are the routers' (in etcd); the migrator only
// verifies them.
type AuthConfig struct {
	// Enabled (flag --auth) authenticates every gRPC call (a service or
	// principal client certificate, or a bearer token) and checks the
	// caller's permissions on the job's table. Off, every call is
	// anonymous and may do everything; a warning is logged at start.
	// Default: false.
	Enabled bool
	// Admins (flag --auth-admins, comma-separated) are principals that may
	// do everything. Default: none.
	Admins []string
}

// targetTable is the Veltrix table a job writes or verifies.
func targetTable(j *migratorv1.Job) string {
	switch {
	case j.GetImportSpec() != nil:
		return j.GetImportSpec().GetMapping().GetTargetTable()
	case j.GetStreamSpec() != nil:
		return j.GetStreamSpec().GetMapping().GetTargetTable()
	}
	return j.GetVerifySpec().GetMapping().GetTargetTable()
}

// writeLevel is what a job writing through m needs: write on its table,
// admin when it may create the table.
func writeLevel(m *migratorv1.Mapping) auth.Level {
	if m.GetCreateTable() {
		return auth.Admin
	}
	return auth.Write
}

// authRules are the permissions every migrator method needs. A job's
// methods need a level on the table it writes or verifies, looked up.
func (sv *service) authRules() map[string]auth.Rule {
	onJob := func(level auth.Level, id func(any) (string, string)) auth.Rule {
		return func(ctx context.Context, req any) ([]string, auth.Level, error) {
			jid, field := id(req)
			j, err := sv.getField(ctx, jid, field)
			if err != nil {
				return nil, level, err
			}
			return []string{targetTable(j)}, level, nil
		}
	}
	byID := func(req any) (string, string) { return req.(interface{ GetId() string }).GetId(), "id" }
	p := "/" + migratorv1.MigratorService_ServiceDesc.ServiceName + "/"
	return map[string]auth.Rule{
		p + "StartImport": func(_ context.Context, req any) ([]string, auth.Level, error) {
			m := req.(*migratorv1.StartImportRequest).GetSpec().GetMapping()
			return []string{m.GetTargetTable()}, writeLevel(m), nil
		},
		p + "StartStream": func(_ context.Context, req any) ([]string, auth.Level, error) {
			m := req.(*migratorv1.StartStreamRequest).GetSpec().GetMapping()
			return []string{m.GetTargetTable()}, writeLevel(m), nil
		},
		p + "StartVerify": auth.On(auth.Read, func(r *migratorv1.StartVerifyRequest) string {
			return r.GetSpec().GetMapping().GetTargetTable()
		}),
		p + "GetJob":   onJob(auth.Read, byID),
		p + "WatchJob": onJob(auth.Read, byID),
		p + "ListRejects": onJob(auth.Read, func(req any) (string, string) {
			return req.(*migratorv1.ListRejectsRequest).GetJobId(), "job_id"
		}),
		p + "CancelJob": onJob(auth.Write, byID),
		p + "RetryJob":  onJob(auth.Write, byID),
		p + "ListJobs":  auth.Cluster(auth.Read),
	}
}

// startAuth loads the principals and keys and builds the guard.
func (s *Server) startAuth(ctx context.Context, sv *service) (*auth.Guard, error) {
	st, err := auth.OpenStore(s.sk.Etcd, s.cfg.Cluster, nil, s.cfg.Auth.Admins, s.logger.With("component", "auth"))
	if err != nil {
		return nil, fmt.Errorf("migrator: %w", err)
	}
	s.auth = st
	if s.cfg.Auth.Enabled {
		wctx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
		defer cancel()
		select {
		case <-st.Loaded():
		case <-wctx.Done():
			return nil, fmt.Errorf("migrator: cannot load principals and keys from etcd within %s: %w", s.cfg.StartTimeout, wctx.Err())
		}
	} else {
		s.logger.Warn("authentication is off (--auth=false): every gRPC call is anonymous and may do everything")
	}
	return auth.NewGuard(auth.GuardOptions{
		Enabled: s.cfg.Auth.Enabled, Authenticator: st, Rules: sv.authRules(),
		Audit: auth.Audit{Logger: s.logger},
	})
}
