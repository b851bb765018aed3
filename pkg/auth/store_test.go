package auth

import (
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/etcdembed"
	"github.com/veltrixdb/veltrix/pkg/tlsx"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func startEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	e, err := etcdembed.Start(etcdembed.Config{Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	c, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func sealKey(b byte) []byte {
	k := make([]byte, SealKeySize)
	for i := range k {
		k[i] = b
	}
	return k
}

func newStore(t *testing.T, c *clientv3.Client, seal []byte, admins ...string) *Store {
	t.Helper()
	s, err := NewStore(t.Context(), c, "test", seal, admins, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// eventually polls cond for up to a second.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a second", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStoreKeys(t *testing.T) {
	c := startEtcd(t)
	ctx := t.Context()
	a := newStore(t, c, sealKey(1), "root")
	b := newStore(t, c, sealKey(1))

	if _, err := a.CreateKey(ctx, "alice", "root"); !errors.Is(err, ErrUnknownPrincipal) {
		t.Fatalf("CreateKey for a missing principal: %v, want ErrUnknownPrincipal", err)
	}
	if _, err := a.SetGrants(ctx, "alice", []Grant{{Table: "orders", Level: Read}}); err != nil {
		t.Fatal(err)
	}
	k, err := a.CreateKey(ctx, "alice", "root")
	if err != nil {
		t.Fatal(err)
	}
	if !ValidKeyID(k.ID) || len(k.Secret) != 40 {
		t.Fatalf("key %q secret length %d", k.ID, len(k.Secret))
	}
	// The creating store sees it at once; another within a second.
	sub, err := a.VerifyToken(k.Token())
	if err != nil {
		t.Fatal(err)
	}
	if sub.Name != "alice" || sub.Via != ViaToken || sub.KeyID != k.ID || sub.Superuser || !sub.Allows("orders", Read) || sub.Allows("orders", Write) {
		t.Fatalf("subject %+v", sub)
	}
	eventually(t, "second store verifies the key", func() bool { _, err := b.VerifyToken(k.Token()); return err == nil })

	if _, err := b.VerifyToken(k.ID + ".wrong-secret-wrong-secret-wrong-secret-xx"); !errors.Is(err, ErrBadSecret) {
		t.Fatalf("wrong secret: %v", err)
	}
	if _, err := b.VerifyToken("VXAAAAAAAAAAAAAAAAAA.x"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown key: %v", err)
	}
	if _, err := b.VerifyToken("garbage"); err == nil || errors.Is(err, ErrUnknownKey) {
		t.Fatalf("malformed token: %v", err)
	}

	// SigV4's sealed secret round trip, on the other process.
	secret, sub, err := b.SigningSecret(k.ID)
	if err != nil || secret != k.Secret || sub.Via != ViaSigV4 {
		t.Fatalf("SigningSecret: %q %+v %v", secret, sub, err)
	}
	// The secret is in etcd neither in clear nor hex- or base64-encoded.
	raw, err := c.Get(ctx, "/veltrix/test/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range raw.Kvs {
		if strings.Contains(string(kv.Value), k.Secret) || strings.Contains(string(kv.Value), hex.EncodeToString([]byte(k.Secret))) {
			t.Fatalf("secret stored in clear at %s: %s", kv.Key, kv.Value)
		}
	}
	// A process with another seal key says so.
	other := newStore(t, c, sealKey(2))
	if _, _, err := other.SigningSecret(k.ID); !errors.Is(err, ErrWrongSealKey) {
		t.Fatalf("wrong seal key: %v", err)
	}
	noSeal := newStore(t, c, nil)
	if _, _, err := noSeal.SigningSecret(k.ID); !errors.Is(err, ErrNoSealKey) {
		t.Fatalf("no seal key: %v", err)
	}
	if _, err := noSeal.CreateKey(ctx, "alice", "root"); !errors.Is(err, ErrNoSealKey) {
		t.Fatalf("CreateKey without seal key: %v", err)
	}

	if got := b.ListKeys("alice"); len(got) != 1 || got[0].ID != k.ID || got[0].CreatedBy != "root" {
		t.Fatalf("ListKeys: %+v", got)
	}
	// Revoke on a, refused by b within a second.
	if err := a.RevokeKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "revocation visible on the second store", func() bool {
		_, err := b.VerifyToken(k.Token())
		return errors.Is(err, ErrUnknownKey)
	})
	if err := a.RevokeKey(ctx, k.ID); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("second revoke: %v", err)
	}

	// Deleting a principal revokes its keys.
	k2, err := a.CreateKey(ctx, "alice", "root")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := a.DeletePrincipal(ctx, "alice")
	if err != nil || len(ids) != 1 || ids[0] != k2.ID {
		t.Fatalf("DeletePrincipal: %v %v", ids, err)
	}
	if _, err := a.VerifyToken(k2.Token()); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("key of a deleted principal: %v", err)
	}
	if _, err := a.DeletePrincipal(ctx, "alice"); !errors.Is(err, ErrUnknownPrincipal) {
		t.Fatalf("delete missing principal: %v", err)
	}
}

func TestStoreSubjects(t *testing.T) {
	c := startEtcd(t)
	s := newStore(t, c, nil, "root")
	if _, err := s.SetGrants(t.Context(), "bob", []Grant{{Table: AllTables, Level: Write}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id        tlsx.Identity
		name      string
		superuser bool
		write     bool
	}{
		{tlsx.Identity{Role: tlsx.RoleMigrator}, "service:migrator", true, true},
		{tlsx.Identity{Principal: "root"}, "root", true, true},
		{tlsx.Identity{Principal: "bob"}, "bob", false, true},
		{tlsx.Identity{Principal: "nobody"}, "nobody", false, false},
	} {
		sub, ok := s.Subject(tc.id)
		if !ok || sub.Name != tc.name || sub.Superuser != tc.superuser || sub.Allows("t1x", Write) != tc.write {
			t.Errorf("%v: %+v", tc.id, sub)
		}
	}
	if _, ok := s.Subject(tlsx.Identity{}); ok {
		t.Error("zero identity has a subject")
	}
}

func TestStoreValidation(t *testing.T) {
	c := startEtcd(t)
	s := newStore(t, c, sealKey(1))
	ctx := t.Context()
	for _, tc := range []struct {
		name   string
		grants []Grant
	}{
		{"", nil},
		{"bad/name", nil},
		{strings.Repeat("a", 129), nil},
		{"ok", []Grant{{Table: "x", Level: Read}}},
		{"ok", []Grant{{Table: "table", Level: None}}},
	} {
		if _, err := s.SetGrants(ctx, tc.name, tc.grants); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetGrants(%q, %v): %v, want ErrInvalid", tc.name, tc.grants, err)
		}
	}
	if err := s.RevokeKey(ctx, "nope"); !errors.Is(err, ErrInvalid) {
		t.Errorf("RevokeKey(nope): %v", err)
	}
}

// TestStoreCompaction: a watch that resumes from a compacted revision
// re-lists, and misses nothing.
func TestStoreCompaction(t *testing.T) {
	c := startEtcd(t)
	ctx := t.Context()
	s := newStore(t, c, sealKey(1))
	w := newStore(t, c, sealKey(1))
	if _, err := s.SetGrants(ctx, "carol", nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "watcher sees carol", func() bool { _, ok := w.Principal("carol"); return ok })
	w.mu.RLock()
	old := w.rev
	w.mu.RUnlock()
	k, err := s.CreateKey(ctx, "carol", "test")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Put(ctx, "/veltrix/test/unrelated", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	// Make w watch again from before the compaction: it must re-list.
	w.restartW <- old
	if err := s.RevokeKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	k2, err := s.CreateKey(ctx, "carol", "test")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "watcher re-listed after compaction", func() bool {
		_, err1 := w.VerifyToken(k.Token())
		_, err2 := w.VerifyToken(k2.Token())
		return errors.Is(err1, ErrUnknownKey) && err2 == nil
	})
}

func TestLoadSealKey(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := LoadSealKey(good)
	if err != nil || len(k) != 32 || k[0] != 0xab {
		t.Fatalf("LoadSealKey: %x %v", k, err)
	}
	for name, content := range map[string]string{"short": "abcd", "nothex": strings.Repeat("zz", 32)} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadSealKey(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want an error naming the file", name, err)
		}
	}
	if _, err := LoadSealKey(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
}

// TestStoreServesWhileEtcdIsDown: the last state keeps verifying tokens
// when etcd cannot be reached (here: the store's client is closed; an
// embedded etcd takes seconds to stop under an open watch).
func TestStoreServesWhileEtcdIsDown(t *testing.T) {
	e, err := etcdembed.Start(etcdembed.Config{Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	c, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(t, c, sealKey(1))
	if _, err := s.SetGrants(t.Context(), "dave", []Grant{{Table: "orders", Level: Write}}); err != nil {
		t.Fatal(err)
	}
	k, err := s.CreateKey(t.Context(), "dave", "test")
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	time.Sleep(200 * time.Millisecond)
	sub, err := s.VerifyToken(k.Token())
	if err != nil || !sub.Allows("orders", Write) {
		t.Fatalf("with etcd unreachable: %+v %v", sub, err)
	}
	if secret, _, err := s.SigningSecret(k.ID); err != nil || secret != k.Secret {
		t.Fatalf("SigningSecret with etcd unreachable: %v", err)
	}
}
