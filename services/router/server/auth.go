package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/veltrixdb/veltrix/pkg/auth"
	"github.com/veltrixdb/veltrix/pkg/svcmain"
	authv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/auth/v1"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
	migrationv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migration/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// AuthConfig configures authentication and per-table permissions
// (docs/design.md, "Security: authentication and permissions").
type AuthConfig struct {
	// Enabled (flag --auth) authenticates every gRPC call (a service or
	// principal client certificate, or a bearer token) and checks the
	// caller's permissions. Off, every call is anonymous and may do
	// everything; a warning is logged at start. Default: false.
	Enabled bool
	// KeyFile (flag --auth-key-file) holds the 32-byte key, as 64 hex
	// characters, that seals API key secrets in etcd. CreateKey and the
	// DynamoDB endpoint's SigV4 need it; every router of a cluster must
	// have the same one. Default: empty (keys cannot be created).
	KeyFile string
	// Admins (flag --auth-admins, comma-separated) are principals that may
	// do everything: the bootstrap admin, e.g. the principal of a client
	// certificate. Default: none.
	Admins []string
}

// authRules are the permissions every router method needs
// (docs/design.md, "Security: authentication and permissions").
func authRules() map[string]auth.Rule {
	table := func(k *kvv1.Key) string { return k.GetTable() }
	byName := func(l auth.Level) auth.Rule {
		return auth.On(l, func(r interface{ GetName() string }) string { return r.GetName() })
	}
	byTable := func(l auth.Level) auth.Rule {
		return auth.On(l, func(r interface{ GetTable() string }) string { return r.GetTable() })
	}
	kv, admin, mig, au := "/"+kvv1.KVService_ServiceDesc.ServiceName+"/",
		"/"+kvv1.AdminService_ServiceDesc.ServiceName+"/",
		"/"+migrationv1.MigrationService_ServiceDesc.ServiceName+"/",
		"/"+authv1.AuthService_ServiceDesc.ServiceName+"/"
	r := map[string]auth.Rule{
		kv + "Get":    auth.On(auth.Read, func(r *kvv1.GetRequest) string { return table(r.GetKey()) }),
		kv + "Put":    auth.On(auth.Write, func(r *kvv1.PutRequest) string { return table(r.GetKey()) }),
		kv + "Delete": auth.On(auth.Write, func(r *kvv1.DeleteRequest) string { return table(r.GetKey()) }),
		kv + "BatchGet": auth.OnTables(auth.Read, func(r *kvv1.BatchGetRequest) []string {
			var ts []string
			for _, k := range r.GetKeys() {
				ts = append(ts, table(k))
			}
			return ts
		}),
		kv + "BatchWrite": auth.OnTables(auth.Write, func(r *kvv1.BatchWriteRequest) []string {
			var ts []string
			for _, m := range r.GetMutations() {
				ts = append(ts, table(m.GetKey()))
			}
			return ts
		}),
		kv + "Query": byTable(auth.Read),
		kv + "Scan":  byTable(auth.Read),
		// Exchange carries the unary calls above, each checked by its own
		// rule as it runs; opening the stream only needs credentials.
		kv + "Exchange": auth.Authenticated(),

		admin + "CreateTable":      byName(auth.Admin),
		admin + "UpdateTable":      byName(auth.Admin),
		admin + "DeleteTable":      byName(auth.Admin),
		admin + "DescribeTable":    byName(auth.Read),
		admin + "ListTables":       auth.Authenticated(), // filtered to the tables the caller can read
		admin + "ClusterStatus":    auth.Cluster(auth.Read),
		admin + "RebalanceStatus":  auth.Cluster(auth.Read),
		admin + "DecommissionNode": auth.Cluster(auth.Admin),
		admin + "RemoveNode":       auth.Cluster(auth.Admin),
		admin + "ReplaceNode":      auth.Cluster(auth.Admin),

		mig + "StartMigration":    byTable(auth.Admin),
		mig + "AdvanceMigration":  byTable(auth.Admin),
		mig + "RollbackMigration": byTable(auth.Admin),
		mig + "FinishMigration":   byTable(auth.Admin),
		mig + "GetMigration":      byTable(auth.Read),
		mig + "ListMismatches":    byTable(auth.Read),
		mig + "ListMigrations":    auth.Cluster(auth.Read),
		mig + "SyncItems":         byTable(auth.Write),
	}
	for _, m := range authv1.AuthService_ServiceDesc.Methods {
		r[au+m.MethodName] = auth.Cluster(auth.Admin)
	}
	return r
}

// startAuth loads the key store and builds the guard. The store follows
// etcd from then on; when the router starts from a persisted topology
// (etcd unreachable) it starts empty and loads once etcd answers.
func (s *Server) startAuth(ctx context.Context) (*auth.Guard, error) {
	a := s.cfg.Auth
	var seal []byte
	if a.KeyFile != "" {
		k, err := auth.LoadSealKey(a.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("router: --auth-key-file: %w", err)
		}
		seal = k
	}
	logger := s.logger.With("component", "auth")
	st, err := auth.OpenStore(s.etcd, s.cfg.Cluster, seal, a.Admins, logger)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	s.auth = st
	if !s.watcher.Stale() {
		wctx, cancel := context.WithTimeout(ctx, s.cfg.EtcdStartTimeout)
		defer cancel()
		select {
		case <-st.Loaded():
		case <-wctx.Done():
			return nil, fmt.Errorf("router: cannot load principals and keys from etcd within %s: %w", s.cfg.EtcdStartTimeout, wctx.Err())
		}
	}
	switch {
	case !a.Enabled:
		s.logger.Warn("authentication is off (--auth=false): every gRPC call is anonymous and may do everything")
	case seal == nil:
		s.logger.Warn("no --auth-key-file: this router verifies bearer tokens but cannot create keys or unseal secrets for SigV4")
	}
	return auth.NewGuard(auth.GuardOptions{
		Enabled: a.Enabled, Authenticator: st, Rules: authRules(),
		Audit: auth.Audit{Logger: s.logger},
	})
}

// authService is AuthService: principals, grants and keys. The guard lets
// only cluster admins in and audits every call.
type authService struct {
	authv1.UnimplementedAuthServiceServer
	s *Server
}

// authStatus is the one place key store errors become gRPC codes.
func authStatus(err error) error {
	return svcmain.ToStatus(err, func(err error) codes.Code {
		switch {
		case errors.Is(err, auth.ErrInvalid):
			return codes.InvalidArgument
		case errors.Is(err, auth.ErrUnknownPrincipal), errors.Is(err, auth.ErrUnknownKey):
			return codes.NotFound
		case errors.Is(err, auth.ErrNoSealKey), errors.Is(err, auth.ErrWrongSealKey):
			return codes.FailedPrecondition
		}
		return codes.Unknown
	})
}

func levelProto(l auth.Level) authv1.Permission {
	switch l {
	case auth.Read:
		return authv1.Permission_PERMISSION_READ
	case auth.Write:
		return authv1.Permission_PERMISSION_WRITE
	case auth.Admin:
		return authv1.Permission_PERMISSION_ADMIN
	}
	return authv1.Permission_PERMISSION_UNSPECIFIED
}

func principalProto(p auth.Principal) *authv1.Principal {
	out := &authv1.Principal{Name: p.Name}
	for _, g := range p.Grants {
		out.Grants = append(out.Grants, &authv1.Grant{Table: g.Table, Permission: levelProto(g.Level)})
	}
	return out
}

func keyProto(k auth.Key) *authv1.Key {
	return &authv1.Key{Id: k.ID, Principal: k.Principal, Created: timestamppb.New(k.Created), CreatedBy: k.CreatedBy}
}

func (a *authService) SetGrants(ctx context.Context, req *authv1.SetGrantsRequest) (*authv1.SetGrantsResponse, error) {
	var grants []auth.Grant
	for i, g := range req.GetGrants() {
		var l auth.Level
		switch g.GetPermission() {
		case authv1.Permission_PERMISSION_READ:
			l = auth.Read
		case authv1.Permission_PERMISSION_WRITE:
			l = auth.Write
		case authv1.Permission_PERMISSION_ADMIN:
			l = auth.Admin
		default:
			return nil, authStatus(fmt.Errorf("%w: grants[%d].permission: want READ, WRITE or ADMIN", auth.ErrInvalid, i))
		}
		grants = append(grants, auth.Grant{Table: g.GetTable(), Level: l})
	}
	auth.AddAuditAttrs(ctx, slog.String("principal", req.GetPrincipal()), slog.Any("grants", grantsAttr(grants)))
	p, err := a.s.auth.SetGrants(ctx, req.GetPrincipal(), grants)
	if err != nil {
		return nil, authStatus(err)
	}
	return &authv1.SetGrantsResponse{Principal: principalProto(p)}, nil
}

// grantsAttr is grants as "table=level" strings, for the audit line.
func grantsAttr(gs []auth.Grant) []string {
	out := make([]string, 0, len(gs))
	for _, g := range gs {
		out = append(out, g.Table+"="+g.Level.String())
	}
	return out
}

func (a *authService) ListPrincipals(ctx context.Context, req *authv1.ListPrincipalsRequest) (*authv1.ListPrincipalsResponse, error) {
	resp := &authv1.ListPrincipalsResponse{}
	for _, p := range a.s.auth.ListPrincipals() {
		resp.Principals = append(resp.Principals, principalProto(p))
	}
	return resp, nil
}

func (a *authService) DeletePrincipal(ctx context.Context, req *authv1.DeletePrincipalRequest) (*authv1.DeletePrincipalResponse, error) {
	auth.AddAuditAttrs(ctx, slog.String("principal", req.GetPrincipal()))
	ids, err := a.s.auth.DeletePrincipal(ctx, req.GetPrincipal())
	if err != nil {
		return nil, authStatus(err)
	}
	auth.AddAuditAttrs(ctx, slog.Any("revoked_keys", ids))
	return &authv1.DeletePrincipalResponse{RevokedKeys: ids}, nil
}

func (a *authService) CreateKey(ctx context.Context, req *authv1.CreateKeyRequest) (*authv1.CreateKeyResponse, error) {
	sub, _ := auth.SubjectFrom(ctx)
	auth.AddAuditAttrs(ctx, slog.String("principal", req.GetPrincipal()))
	k, err := a.s.auth.CreateKey(ctx, req.GetPrincipal(), sub.Name)
	if err != nil {
		return nil, authStatus(err)
	}
	auth.AddAuditAttrs(ctx, slog.String("created_key", k.ID))
	return &authv1.CreateKeyResponse{Key: keyProto(k.Key), Secret: k.Secret, Token: k.Token()}, nil
}

func (a *authService) ListKeys(ctx context.Context, req *authv1.ListKeysRequest) (*authv1.ListKeysResponse, error) {
	resp := &authv1.ListKeysResponse{}
	for _, k := range a.s.auth.ListKeys(req.GetPrincipal()) {
		resp.Keys = append(resp.Keys, keyProto(k))
	}
	return resp, nil
}

func (a *authService) RevokeKey(ctx context.Context, req *authv1.RevokeKeyRequest) (*authv1.RevokeKeyResponse, error) {
	auth.AddAuditAttrs(ctx, slog.String("revoked_key", req.GetId()))
	if err := a.s.auth.RevokeKey(ctx, req.GetId()); err != nil {
		return nil, authStatus(err)
	}
	return &authv1.RevokeKeyResponse{}, nil
}

// canRead reports whether the call's subject may read table; a call
// without a subject (that did not pass the guard) may not.
func canRead(ctx context.Context, table string) bool {
	sub, ok := auth.SubjectFrom(ctx)
	return ok && sub.Allows(table, auth.Read)
}
