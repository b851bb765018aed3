package auth

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/tlsx"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// fakeAuth knows one token per principal: "VXAAAAAAAAAAAAAAAAA<n>.secret".
type fakeAuth struct {
	tokens map[string]Principal
}

func (f fakeAuth) VerifyToken(token string) (Subject, error) {
	id, secret, ok := strings.Cut(token, ".")
	if !ok {
		return Subject{}, errMalformed
	}
	p, ok := f.tokens[id]
	if !ok {
		return Subject{}, ErrUnknownKey
	}
	if secret != "secret" {
		return Subject{}, ErrBadSecret
	}
	return Subject{Name: p.Name, Via: ViaToken, KeyID: id, Principal: &p}, nil
}

func (f fakeAuth) SigningSecret(string) (string, Subject, error) { return "", Subject{}, ErrUnknownKey }

func (f fakeAuth) Subject(id tlsx.Identity) (Subject, bool) {
	if id.Role != "" {
		return Service(id.Role), true
	}
	if id.Principal == "root" {
		return Subject{Name: "root", Via: ViaCert, Superuser: true}, true
	}
	return Subject{Name: id.Principal, Via: ViaCert, Principal: &Principal{Name: id.Principal}}, true
}

var errMalformed = status.Error(codes.InvalidArgument, "malformed")

type getReq struct{ table string }

const (
	reader = "VXAAAAAAAAAAAAAAAAAR"
	admin  = "VXAAAAAAAAAAAAAAAAAA"
)

func newTestGuard(t *testing.T, enabled bool) (*Guard, *bytes.Buffer) {
	var buf bytes.Buffer
	g, err := NewGuard(GuardOptions{
		Enabled: enabled,
		Authenticator: fakeAuth{tokens: map[string]Principal{
			reader: {Name: "reader", Grants: []Grant{{Table: "orders", Level: Read}}},
			admin:  {Name: "ops", Grants: []Grant{{Table: AllTables, Level: Admin}}},
		}},
		Rules: map[string]Rule{
			"/t.S/Get":    On(Read, func(r *getReq) string { return r.table }),
			"/t.S/Put":    On(Write, func(r *getReq) string { return r.table }),
			"/t.S/Nodes":  Cluster(Admin),
			"/t.S/List":   Authenticated(),
			"/t.S/Scan":   On(Read, func(r *getReq) string { return r.table }),
			"/t.S/Create": On(Admin, func(r *getReq) string { return r.table }),
		},
		Audit: Audit{Logger: slog.New(slog.NewTextHandler(&buf, nil))},
	})
	if err != nil {
		t.Fatal(err)
	}
	return g, &buf
}

func withToken(token string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+token))
}

func withCert(id *url.URL) context.Context {
	cert := &x509.Certificate{URIs: []*url.URL{id}}
	return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{
		State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}},
	}})
}

func TestGuardUnary(t *testing.T) {
	g, audit := newTestGuard(t, true)
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		method  string
		table   string
		code    codes.Code
		subject string
		inMsg   []string
		notIn   string
	}{
		{name: "no credentials", ctx: context.Background(), method: "/t.S/Get", table: "orders", code: codes.Unauthenticated, inMsg: []string{"missing credentials"}},
		{name: "not bearer", ctx: metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Basic abc")), method: "/t.S/Get", code: codes.Unauthenticated},
		{name: "unknown key", ctx: withToken("VXBBBBBBBBBBBBBBBBBB.secret"), method: "/t.S/Get", code: codes.Unauthenticated, inMsg: []string{"unknown or revoked", "VXBBBBBBBBBBBBBBBBBB"}},
		{name: "wrong secret", ctx: withToken(reader + ".hunter2"), method: "/t.S/Get", code: codes.Unauthenticated, inMsg: []string{"wrong secret"}, notIn: "hunter2"},
		{name: "read allowed", ctx: withToken(reader + ".secret"), method: "/t.S/Get", table: "orders", subject: "reader"},
		{name: "write denied", ctx: withToken(reader + ".secret"), method: "/t.S/Put", table: "orders", code: codes.PermissionDenied, inMsg: []string{`"reader"`, "write", `"orders"`, "/t.S/Put"}},
		{name: "other table denied", ctx: withToken(reader + ".secret"), method: "/t.S/Get", table: "users", code: codes.PermissionDenied, inMsg: []string{`"users"`}},
		{name: "cluster op denied", ctx: withToken(reader + ".secret"), method: "/t.S/Nodes", code: codes.PermissionDenied, inMsg: []string{"admin", `"*"`}},
		{name: "cluster admin", ctx: withToken(admin + ".secret"), method: "/t.S/Nodes", subject: "ops"},
		{name: "list", ctx: withToken(reader + ".secret"), method: "/t.S/List", subject: "reader"},
		{name: "no rule", ctx: withToken(admin + ".secret"), method: "/t.S/Unknown", code: codes.PermissionDenied, inMsg: []string{"no permission rule"}},
		{name: "health open", ctx: context.Background(), method: "/grpc.health.v1.Health/Check"},
		{name: "service cert", ctx: withCert(tlsx.ServiceURI(tlsx.RoleMigrator)), method: "/t.S/Put", table: "orders", subject: "service:migrator"},
		{name: "admin principal cert", ctx: withCert(tlsx.PrincipalURI("root")), method: "/t.S/Nodes", subject: "root"},
		{name: "principal cert without grants", ctx: withCert(tlsx.PrincipalURI("eve")), method: "/t.S/Get", table: "orders", code: codes.PermissionDenied, inMsg: []string{`"eve"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			called := false
			var got Subject
			_, err := g.Unary(tc.ctx, &getReq{table: tc.table}, &grpc.UnaryServerInfo{FullMethod: tc.method}, func(ctx context.Context, req any) (any, error) {
				called = true
				got, _ = SubjectFrom(ctx)
				return nil, nil
			})
			if status.Code(err) != tc.code {
				t.Fatalf("code %v (%v), want %v", status.Code(err), err, tc.code)
			}
			if called != (tc.code == codes.OK) {
				t.Fatalf("handler called: %v", called)
			}
			if got.Name != tc.subject {
				t.Fatalf("subject %q, want %q", got.Name, tc.subject)
			}
			for _, s := range tc.inMsg {
				if !strings.Contains(status.Convert(err).Message(), s) {
					t.Errorf("message %q lacks %q", status.Convert(err).Message(), s)
				}
			}
			if tc.notIn != "" && (strings.Contains(err.Error(), tc.notIn) || strings.Contains(audit.String(), tc.notIn)) {
				t.Errorf("secret %q echoed", tc.notIn)
			}
		})
	}
	log := audit.String()
	for _, want := range []string{
		`msg=audit outcome=denied subject="" via="" key_id="" op=/t.S/Get table="" need=none reason="missing credentials"`,
		`outcome=denied subject=reader via=token key_id=` + reader + ` op=/t.S/Put table=orders need=write`,
		`msg=audit outcome=ok subject=ops via=token key_id=` + admin + ` op=/t.S/Nodes table=*`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("audit log lacks %q:\n%s", want, log)
		}
	}
}

func TestGuardAdminAudit(t *testing.T) {
	g, audit := newTestGuard(t, true)
	_, err := g.Unary(withToken(admin+".secret"), &getReq{table: "orders"}, &grpc.UnaryServerInfo{FullMethod: "/t.S/Create"}, func(ctx context.Context, req any) (any, error) {
		AddAuditAttrs(ctx, slog.String("created", "orders"))
		return nil, status.Error(codes.AlreadyExists, "exists")
	})
	if status.Code(err) != codes.AlreadyExists {
		t.Fatal(err)
	}
	if want := `outcome=failed subject=ops via=token key_id=` + admin + ` op=/t.S/Create table=orders created=orders err="rpc error: code = AlreadyExists desc = exists"`; !strings.Contains(audit.String(), want) {
		t.Errorf("audit log lacks %q:\n%s", want, audit)
	}
}

func TestGuardDisabled(t *testing.T) {
	g, audit := newTestGuard(t, false)
	var got Subject
	_, err := g.Unary(context.Background(), &getReq{}, &grpc.UnaryServerInfo{FullMethod: "/t.S/Anything"}, func(ctx context.Context, req any) (any, error) {
		got, _ = SubjectFrom(ctx)
		return nil, nil
	})
	if err != nil || got.Name != Anonymous.Name || !got.Superuser {
		t.Fatalf("%+v %v", got, err)
	}
	err = g.Stream(nil, &fakeStream{ctx: context.Background()}, &grpc.StreamServerInfo{FullMethod: "/t.S/Scan"}, func(srv any, ss grpc.ServerStream) error {
		got, _ = SubjectFrom(ss.Context())
		return nil
	})
	if err != nil || got.Name != Anonymous.Name {
		t.Fatalf("stream: %+v %v", got, err)
	}
	if audit.Len() != 0 {
		t.Fatalf("audit with auth off: %s", audit)
	}
}

type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
	req *getReq
}

func (f *fakeStream) Context() context.Context { return f.ctx }
func (f *fakeStream) RecvMsg(m any) error {
	*(m.(*getReq)) = *f.req
	return nil
}

func TestGuardStream(t *testing.T) {
	g, _ := newTestGuard(t, true)
	scan := func(ctx context.Context, table string) (Subject, error) {
		var got Subject
		err := g.Stream(nil, &fakeStream{ctx: ctx, req: &getReq{table: table}}, &grpc.StreamServerInfo{FullMethod: "/t.S/Scan", IsServerStream: true}, func(srv any, ss grpc.ServerStream) error {
			var req getReq
			if err := ss.RecvMsg(&req); err != nil {
				return err
			}
			got, _ = SubjectFrom(ss.Context())
			return nil
		})
		return got, err
	}
	if s, err := scan(withToken(reader+".secret"), "orders"); err != nil || s.Name != "reader" {
		t.Fatalf("allowed scan: %+v %v", s, err)
	}
	if _, err := scan(withToken(reader+".secret"), "users"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("scan of another table: %v", err)
	}
	if _, err := scan(context.Background(), "orders"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("scan without credentials: %v", err)
	}
	// A handler that sends before receiving cannot skip the check.
	err := g.Stream(nil, &fakeStream{ctx: withToken(reader + ".secret"), req: &getReq{table: "users"}}, &grpc.StreamServerInfo{FullMethod: "/t.S/Scan", IsServerStream: true}, func(srv any, ss grpc.ServerStream) error {
		return ss.SendMsg(&getReq{})
	})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("send before receive: %v", err)
	}
}

func TestGuardMissing(t *testing.T) {
	g, _ := newTestGuard(t, true)
	got := g.Missing(map[string]grpc.ServiceInfo{
		"t.S":                   {Methods: []grpc.MethodInfo{{Name: "Get"}, {Name: "Other"}}},
		"grpc.health.v1.Health": {Methods: []grpc.MethodInfo{{Name: "Check"}}},
	})
	if len(got) != 1 || got[0] != "/t.S/Other" {
		t.Fatalf("Missing: %v", got)
	}
}
