// Package auth is Veltrix's authentication and authorisation
// (docs/design.md, "Security"): principals with per-table permissions,
// API keys stored hashed in etcd, the subject of each call, the gRPC
// guards of the public services, and the audit log.
package auth

import (
	"context"
	"fmt"
	"strings"

	"github.com/veltrixdb/veltrix/pkg/tlsx"
)

// Level is a permission level on a table; each includes the ones below.
type Level int8

// The levels, in order.
const (
	None Level = iota
	Read
	Write
	Admin
)

// AllTables is the table of a grant on every table.
const AllTables = "*"

// String is the level's lower-case name.
func (l Level) String() string {
	switch l {
	case Read:
		return "read"
	case Write:
		return "write"
	case Admin:
		return "admin"
	}
	return "none"
}

// ParseLevel parses "read", "write" or "admin".
func ParseLevel(s string) (Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "read":
		return Read, nil
	case "write":
		return Write, nil
	case "admin":
		return Admin, nil
	}
	return None, fmt.Errorf("permission %q: want read, write or admin", s)
}

// Grant is a level on a table (or AllTables).
type Grant struct {
	Table string
	Level Level
}

// Principal is a named client and its grants.
type Principal struct {
	Name   string
	Grants []Grant
}

// Allows reports whether p holds at least level l on table: a grant on
// table or on AllTables. A table of AllTables asks for a grant on every
// table (cluster-wide operations), which only a grant on AllTables gives.
func (p *Principal) Allows(table string, l Level) bool {
	if p == nil {
		return false
	}
	for _, g := range p.Grants {
		if g.Level >= l && (g.Table == AllTables || g.Table == table && table != AllTables) {
			return true
		}
	}
	return false
}

// Via is how a subject proved who it is.
type Via string

// The ways in.
const (
	// ViaNone: authentication is off; the subject may do everything.
	ViaNone Via = "none"
	// ViaService: a Veltrix service's certificate (mutual TLS).
	ViaService Via = "service"
	// ViaCert: a principal's client certificate.
	ViaCert Via = "cert"
	// ViaToken: a bearer token (API key).
	ViaToken Via = "token"
	// ViaSigV4: an AWS SigV4 signature with an API key.
	ViaSigV4 Via = "sigv4"
)

// Subject is who makes a call: a principal, a Veltrix service (which may
// do everything: the migrator writes imports, routers call storage), or
// anyone when authentication is off.
type Subject struct {
	// Name is the principal's name, "service:<role>", or "anonymous".
	Name string
	Via  Via
	// KeyID is the API key used (ViaToken, ViaSigV4).
	KeyID string
	// Principal holds the grants (nil for services and ViaNone).
	Principal *Principal
	// Superuser is set for services, ViaNone, and the principals named by
	// --auth-admins: every check passes.
	Superuser bool
}

// Service returns the subject of a Veltrix service certificate.
func Service(r tlsx.Role) Subject {
	return Subject{Name: "service:" + string(r), Via: ViaService, Superuser: true}
}

// Anonymous is the subject of every call when authentication is off.
var Anonymous = Subject{Name: "anonymous", Via: ViaNone, Superuser: true}

// Allows reports whether the subject holds at least l on table.
func (s Subject) Allows(table string, l Level) bool {
	return s.Superuser || s.Principal.Allows(table, l)
}

type subjectKey struct{}

// WithSubject returns ctx carrying s.
func WithSubject(ctx context.Context, s Subject) context.Context {
	return context.WithValue(ctx, subjectKey{}, s)
}

// SubjectFrom returns the subject ctx carries; false when none (the call
// was not authenticated, which guards treat as refused).
func SubjectFrom(ctx context.Context) (Subject, bool) {
	s, ok := ctx.Value(subjectKey{}).(Subject)
	return s, ok
}
