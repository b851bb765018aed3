package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/veltrixdb/veltrix/pkg/tlsx"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Rule says what a gRPC method needs: level on each of tables. A rule
// with no tables only needs an authenticated subject (the handler filters
// what it returns). An error (a gRPC status: the request names a job that
// does not exist) is returned to the caller as is.
type Rule func(ctx context.Context, req any) (tables []string, level Level, err error)

// On is the rule of a method that needs level on the table table(req)
// names.
func On[T any](level Level, table func(T) string) Rule {
	return OnTables(level, func(r T) []string { return []string{table(r)} })
}

// OnTables is the rule of a method that needs level on every table
// tables(req) names (a batch may name several).
func OnTables[T any](level Level, tables func(T) []string) Rule {
	return func(_ context.Context, req any) ([]string, Level, error) {
		r, ok := req.(T)
		if !ok {
			return nil, level, status.Errorf(codes.Internal, "auth: rule for %T got a %T", r, req)
		}
		ts := tables(r)
		slices.Sort(ts)
		return slices.Compact(ts), level, nil
	}
}

// Cluster is the rule of a cluster-wide method: level on AllTables.
func Cluster(level Level) Rule {
	return func(context.Context, any) ([]string, Level, error) {
		return []string{AllTables}, level, nil
	}
}

// Authenticated is the rule of a method any authenticated subject may
// call; the handler filters what it returns by the subject's grants.
func Authenticated() Rule {
	return func(context.Context, any) ([]string, Level, error) { return nil, None, nil }
}

// Authenticator finds the subject of a call's credentials. *Store
// implements it.
type Authenticator interface {
	Credentials
	// Subject is the subject of a verified certificate's identity.
	Subject(id tlsx.Identity) (Subject, bool)
}

// GuardOptions configures NewGuard.
type GuardOptions struct {
	// Enabled turns authentication and authorisation on. Off, every call's
	// subject is Anonymous and nothing is checked.
	Enabled bool
	// Authenticator verifies certificates' principals and bearer tokens.
	// Required when Enabled.
	Authenticator Authenticator
	// Rules maps full method names ("/veltrix.kv.v1.KVService/Get") to
	// their rule. A method without one is refused (fail closed), except
	// the health and reflection services.
	Rules map[string]Rule
	// Audit receives a line per refused call and per admin-level call.
	Audit Audit
}

// Guard is the gRPC server interceptors that authenticate every call of a
// service, check its method's rule and put the Subject in the handler's
// context (SubjectFrom). Install Unary and Stream as a server's own
// interceptors (grpcx.ServerOptions), after its recovery and metrics ones.
type Guard struct {
	o GuardOptions
}

// NewGuard returns a guard.
func NewGuard(o GuardOptions) (*Guard, error) {
	if o.Enabled && o.Authenticator == nil {
		return nil, errors.New("auth: guard enabled without an authenticator")
	}
	return &Guard{o: o}, nil
}

// open reports whether method needs no credentials: health checks and
// reflection.
func open(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.") || strings.HasPrefix(method, "/grpc.reflection.")
}

// Missing lists the methods of the services in info that have no rule.
func (g *Guard) Missing(info map[string]grpc.ServiceInfo) []string {
	var out []string
	for svc, si := range info {
		for _, m := range si.Methods {
			name := "/" + svc + "/" + m.Name
			if _, ok := g.o.Rules[name]; !ok && !open(name) {
				out = append(out, name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// missingCredentials is the message of a call with no credentials.
const missingCredentials = "missing credentials: send a bearer token or a client certificate"

// authenticate finds the call's subject.
func (g *Guard) authenticate(ctx context.Context, method string) (Subject, error) {
	if id, ok := tlsx.PeerIdentity(ctx); ok {
		if s, ok := g.o.Authenticator.Subject(id); ok {
			return s, nil
		}
	}
	// ValueFromIncomingContext copies one header, not the whole metadata.
	vals := metadata.ValueFromIncomingContext(ctx, "authorization")
	if len(vals) == 0 {
		g.o.Audit.Denied(ctx, Subject{}, method, "", None, "missing credentials")
		return Subject{}, status.Error(codes.Unauthenticated, missingCredentials)
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(vals[0]), " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "bearer") || token == "" {
		g.o.Audit.Denied(ctx, Subject{}, method, "", None, "authorization metadata is not a bearer token")
		return Subject{}, status.Error(codes.Unauthenticated, `authorization metadata: want "Bearer <key id>.<secret>"`)
	}
	s, err := g.o.Authenticator.VerifyToken(token)
	if err != nil {
		id, _, _ := strings.Cut(token, ".")
		var msg string
		switch {
		case errors.Is(err, ErrUnknownKey):
			msg = fmt.Sprintf("unknown or revoked API key %q", id)
		case errors.Is(err, ErrBadSecret):
			msg = fmt.Sprintf("wrong secret for API key %q", id)
		default:
			msg = "malformed bearer token: want <key id>.<secret>"
			id = ""
		}
		g.o.Audit.Denied(ctx, Subject{KeyID: id, Via: ViaToken}, method, "", None, msg)
		return Subject{}, status.Error(codes.Unauthenticated, msg)
	}
	return s, nil
}

// authorize authenticates the call and checks its rule on req; it returns
// the subject and, for an admin-level call, the tables for the audit.
func (g *Guard) authorize(ctx context.Context, method string, req any) (Subject, []string, bool, error) {
	s, err := g.authenticate(ctx, method)
	if err != nil {
		return Subject{}, nil, false, err
	}
	rule, ok := g.o.Rules[method]
	if !ok {
		g.o.Audit.Denied(ctx, s, method, "", None, "method has no permission rule")
		return s, nil, false, status.Errorf(codes.PermissionDenied, "%s: method has no permission rule (refused)", method)
	}
	tables, level, err := rule(WithSubject(ctx, s), req)
	if err != nil {
		return s, nil, false, err
	}
	for _, t := range tables {
		if !s.Allows(t, level) {
			what := fmt.Sprintf("table %q", t)
			if t == AllTables {
				what = `every table ("*")`
			}
			msg := fmt.Sprintf("principal %q (via %s) lacks %s permission on %s needed by %s", s.Name, s.Via, level, what, method)
			g.o.Audit.Denied(ctx, s, method, t, level, "lacks permission")
			return s, nil, false, status.Error(codes.PermissionDenied, msg)
		}
	}
	return s, tables, level == Admin, nil
}

// Unary is the unary server interceptor.
func (g *Guard) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !g.o.Enabled {
		return handler(WithSubject(ctx, Anonymous), req)
	}
	if open(info.FullMethod) {
		return handler(ctx, req)
	}
	s, tables, admin, err := g.authorize(ctx, info.FullMethod, req)
	if err != nil {
		return nil, err
	}
	ctx = WithSubject(ctx, s)
	if !admin {
		return handler(ctx, req)
	}
	ctx, attrs := withAuditAttrs(ctx)
	resp, err := handler(ctx, req)
	g.o.Audit.Admin(ctx, s, info.FullMethod, strings.Join(tables, ","), err, attrs.get()...)
	return resp, err
}

// Stream is the stream server interceptor. The caller is authenticated
// when the stream opens; its rule is checked on the first message
// received (the request of a server-streaming method), before the
// handler sees it.
func (g *Guard) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx := ss.Context()
	if !g.o.Enabled {
		return handler(srv, &guardedStream{ServerStream: ss, ctx: WithSubject(ctx, Anonymous), checked: true})
	}
	if open(info.FullMethod) {
		return handler(srv, ss)
	}
	s, err := g.authenticate(ctx, info.FullMethod)
	if err != nil {
		return err
	}
	ctx, attrs := withAuditAttrs(WithSubject(ctx, s))
	gs := &guardedStream{ServerStream: ss, ctx: ctx, g: g, method: info.FullMethod}
	err = handler(srv, gs)
	if gs.admin {
		g.o.Audit.Admin(ctx, gs.subject, info.FullMethod, strings.Join(gs.tables, ","), err, attrs.get()...)
	}
	return err
}

type guardedStream struct {
	grpc.ServerStream
	ctx     context.Context
	g       *Guard
	method  string
	checked bool
	subject Subject
	tables  []string
	admin   bool
}

func (s *guardedStream) Context() context.Context { return s.ctx }

// SendMsg refuses to send before a request was received and checked, so a
// handler that sends first cannot skip the rule.
func (s *guardedStream) SendMsg(m any) error {
	if !s.checked {
		return status.Errorf(codes.PermissionDenied, "%s: nothing sent before the request is received and its permissions checked", s.method)
	}
	return s.ServerStream.SendMsg(m)
}

func (s *guardedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if s.checked {
		return nil
	}
	sub, tables, admin, err := s.g.authorize(s.ServerStream.Context(), s.method, m)
	if err != nil {
		return err
	}
	s.checked, s.subject, s.tables, s.admin = true, sub, tables, admin
	return nil
}

// auditAttrs collects what an admin handler changed, for the guard's
// audit line.
type auditAttrs struct {
	mu    sync.Mutex
	attrs []slog.Attr
}

func (a *auditAttrs) get() []slog.Attr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.attrs)
}

type auditAttrsKey struct{}

func withAuditAttrs(ctx context.Context) (context.Context, *auditAttrs) {
	a := &auditAttrs{}
	return context.WithValue(ctx, auditAttrsKey{}, a), a
}

// AddAuditAttrs adds attributes naming what an admin-level call changed
// (a principal, a key id) to the audit line the guard writes after it.
// Outside an admin-level call it does nothing.
func AddAuditAttrs(ctx context.Context, attrs ...slog.Attr) {
	if a, ok := ctx.Value(auditAttrsKey{}).(*auditAttrs); ok {
		a.mu.Lock()
		a.attrs = append(a.attrs, attrs...)
		a.mu.Unlock()
	}
}
