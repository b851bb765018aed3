package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"testing"
)

// FuzzVerifyToken: any bearer token, however malformed, is refused without
// a panic, unless it is exactly the key's token.
func FuzzVerifyToken(f *testing.F) {
	const id, secret = "VXABCDEFGHIJKLMNOPQR", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXh4"
	sum := sha256.Sum256([]byte(secret))
	s := &Store{
		logger: slog.New(slog.DiscardHandler), admins: map[string]bool{},
		prins: map[string]Principal{"p": {Name: "p"}},
		keys:  map[string]keyDoc{id: {ID: id, Principal: "p", SecretSHA256: hex.EncodeToString(sum[:]), hash: sum[:]}},
	}
	for _, seed := range []string{id + "." + secret, id + ".", "." + secret, "", "VX.x", id + "." + secret + ".", "Bearer x"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		sub, err := s.VerifyToken(token)
		if (err == nil) != (token == id+"."+secret) {
			t.Fatalf("VerifyToken(%q): %+v %v", token, sub, err)
		}
	})
}
