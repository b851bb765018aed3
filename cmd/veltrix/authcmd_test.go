package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/veltrixdb/veltrix/pkg/tlsx"
	authv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/auth/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fakeAuth is an AuthService that records the calls and the token they
// carried.
type fakeAuth struct {
	authv1.UnimplementedAuthServiceServer
	mu     sync.Mutex
	calls  []string
	tokens []string
	grants []*authv1.Grant
}

func (f *fakeAuth) record(ctx context.Context, call string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	f.tokens = append(f.tokens, strings.Join(md.Get("authorization"), ","))
	if len(md.Get("authorization")) == 0 {
		return status.Error(codes.Unauthenticated, "missing credentials: send a bearer token or a client certificate")
	}
	return nil
}

func (f *fakeAuth) SetGrants(ctx context.Context, r *authv1.SetGrantsRequest) (*authv1.SetGrantsResponse, error) {
	if err := f.record(ctx, "SetGrants "+r.GetPrincipal()); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.grants = r.GetGrants()
	f.mu.Unlock()
	return &authv1.SetGrantsResponse{Principal: &authv1.Principal{Name: r.GetPrincipal(), Grants: r.GetGrants()}}, nil
}

func (f *fakeAuth) CreateKey(ctx context.Context, r *authv1.CreateKeyRequest) (*authv1.CreateKeyResponse, error) {
	if err := f.record(ctx, "CreateKey "+r.GetPrincipal()); err != nil {
		return nil, err
	}
	id, secret := "VXAAAAAAAAAAAAAAAAAA", "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3"
	return &authv1.CreateKeyResponse{
		Key:    &authv1.Key{Id: id, Principal: r.GetPrincipal(), Created: timestamppb.Now(), CreatedBy: "root"},
		Secret: secret, Token: id + "." + secret,
	}, nil
}

func (f *fakeAuth) ListPrincipals(ctx context.Context, _ *authv1.ListPrincipalsRequest) (*authv1.ListPrincipalsResponse, error) {
	if err := f.record(ctx, "ListPrincipals"); err != nil {
		return nil, err
	}
	return &authv1.ListPrincipalsResponse{Principals: []*authv1.Principal{{Name: "alice", Grants: []*authv1.Grant{
		{Table: "orders", Permission: authv1.Permission_PERMISSION_WRITE}, {Table: "*", Permission: authv1.Permission_PERMISSION_READ}}}}}, nil
}

func (f *fakeAuth) RevokeKey(ctx context.Context, r *authv1.RevokeKeyRequest) (*authv1.RevokeKeyResponse, error) {
	if err := f.record(ctx, "RevokeKey "+r.GetId()); err != nil {
		return nil, err
	}
	return &authv1.RevokeKeyResponse{}, nil
}

func TestAuthCommands(t *testing.T) {
	fa := &fakeAuth{}
	// A token is sent only over TLS: the fake serves with a dev PKI's
	// router certificate, and the CLI trusts its CA.
	pki, err := tlsx.WriteDevPKI(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	src, err := tlsx.Load(pki.Service(tlsx.RoleRouter), "tls", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	addr := serve(t, func(s *grpc.Server) { authv1.RegisterAuthServiceServer(s, fa) }, grpc.Creds(src.ServerCredentials(tlsx.VerifyIfGiven)))
	env := map[string]string{"VELTRIX_ENDPOINTS": addr, "VELTRIX_TOKEN": "VXROOT.tok", "VELTRIX_CACERT": pki.CA}

	code, out, errOut := runCLI(t, env, "auth", "key", "create", "--principal", "alice", "--grant", "orders=write", "--grant", "*=read")
	if code != 0 {
		t.Fatalf("key create: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"key VXAAAAAAAAAAAAAAAAAA for principal alice", "token:  VXAAAAAAAAAAAAAAAAAA.s3cr3t",
		"export AWS_ACCESS_KEY_ID=VXAAAAAAAAAAAAAAAAAA", "export AWS_SECRET_ACCESS_KEY=s3cr3t-", "export VELTRIX_TOKEN=VXAAAAAAAAAAAAAAAAAA."} {
		if !strings.Contains(out, want) {
			t.Errorf("key create output lacks %q:\n%s", want, out)
		}
	}
	fa.mu.Lock()
	if strings.Join(fa.calls, ";") != "SetGrants alice;CreateKey alice" || fa.tokens[0] != "Bearer VXROOT.tok" || grantsText(fa.grants) != "orders=write,*=read" {
		t.Errorf("calls %v tokens %v grants %v", fa.calls, fa.tokens, fa.grants)
	}
	fa.mu.Unlock()

	code, out, errOut = runCLI(t, env, "auth", "principal", "list", "-o", "json")
	var doc struct {
		Principals []struct {
			Name   string `json:"name"`
			Grants []struct {
				Table      string `json:"table"`
				Permission string `json:"permission"`
			} `json:"grants"`
		} `json:"principals"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || len(doc.Principals) != 1 || doc.Principals[0].Grants[0].Permission != "PERMISSION_WRITE" {
		t.Fatalf("principal list -o json: exit %d %s %s", code, out, errOut)
	}
	code, out, _ = runCLI(t, env, "auth", "principal", "list")
	if code != 0 || !strings.Contains(out, "alice") || !strings.Contains(out, "orders=write,*=read") {
		t.Fatalf("principal list: %d %s", code, out)
	}
	code, out, _ = runCLI(t, env, "auth", "key", "revoke", "VXAAAAAAAAAAAAAAAAAA")
	if code != 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("key revoke: %d %s", code, out)
	}

	// Without a token the router's refusal says what to do.
	code, _, errOut = runCLI(t, map[string]string{"VELTRIX_ENDPOINTS": addr, "VELTRIX_CACERT": pki.CA}, "auth", "principal", "list")
	if code != 1 || !strings.Contains(errOut, "not authenticated") || !strings.Contains(errOut, "VELTRIX_TOKEN") {
		t.Fatalf("without a token: exit %d %s", code, errOut)
	}
}

func TestAuthUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"auth"}, "want one of: key, principal"},
		{[]string{"auth", "principal", "set", "alice", "--grant", "orders"}, `--grant "orders": want TABLE=LEVEL`},
		{[]string{"auth", "principal", "set", "alice", "--grant", "orders=owner"}, `unknown level "owner"`},
		{[]string{"auth", "key", "create"}, "--principal is required"},
		{[]string{"auth", "key", "create", "--principal", "a", "--grant", "=read"}, `--grant "=read"`},
		{[]string{"auth", "key", "revoke"}, "wrong number of arguments"},
	} {
		code, _, stderr := runCLI(t, nil, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("veltrix %s: exit %d, stderr %q; want exit 2 containing %q", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
}
