package auth

import (
	"context"
	"errors"
	"log/slog"
)

// Errors of Credentials.
var (
	// ErrUnknownKey: no such key, or it was revoked.
	ErrUnknownKey = errors.New("auth: unknown or revoked key")
	// ErrBadSecret: the key exists but the secret is wrong.
	ErrBadSecret = errors.New("auth: wrong secret")
)

// Credentials verifies API keys. *Store implements it; the DynamoDB
// endpoint's SigV4 verifier and the gRPC guards use it.
type Credentials interface {
	// VerifyToken returns the subject of a bearer token "<id>.<secret>":
	// ErrUnknownKey for an unknown or revoked key, ErrBadSecret for a
	// wrong secret, another error for a malformed token.
	VerifyToken(token string) (Subject, error)
	// SigningSecret returns an access key's secret (to check a SigV4
	// signature with) and the subject it authenticates; ErrUnknownKey for
	// an unknown or revoked key.
	SigningSecret(accessKeyID string) (secret string, s Subject, err error)
}

// Audit writes the audit log: one structured line (slog, message "audit")
// per admin operation and per denied call, with the subject, how it
// authenticated, the operation, the table and the outcome.
type Audit struct {
	Logger *slog.Logger
}

// Denied records a refused call: who (may be the zero Subject when
// authentication itself failed), the operation (gRPC method or DynamoDB
// operation), the table ("" when none), the level it needed and why.
func (a Audit) Denied(ctx context.Context, s Subject, op, table string, need Level, reason string) {
	if a.Logger == nil {
		return
	}
	a.Logger.LogAttrs(ctx, slog.LevelWarn, "audit",
		slog.String("outcome", "denied"), slog.String("subject", s.Name), slog.String("via", string(s.Via)),
		slog.String("key_id", s.KeyID), slog.String("op", op), slog.String("table", table),
		slog.String("need", need.String()), slog.String("reason", reason))
}

// Admin records an admin operation that was allowed and ran (err nil) or
// failed (err set), with extra attributes naming what it changed.
func (a Audit) Admin(ctx context.Context, s Subject, op, table string, err error, attrs ...slog.Attr) {
	if a.Logger == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = "failed"
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	a.Logger.LogAttrs(ctx, slog.LevelInfo, "audit", append([]slog.Attr{
		slog.String("outcome", outcome), slog.String("subject", s.Name), slog.String("via", string(s.Via)),
		slog.String("key_id", s.KeyID), slog.String("op", op), slog.String("table", table),
	}, attrs...)...)
}
