package auth

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/veltrixdb/veltrix/pkg/tlsx"
	"github.com/veltrixdb/veltrix/pkg/topology"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Errors of the Store (use errors.Is).
var (
	// ErrUnknownPrincipal: no such principal.
	ErrUnknownPrincipal = errors.New("auth: unknown principal")
	// ErrInvalid: a bad name, table or level; the message names it.
	ErrInvalid = errors.New("auth: invalid argument")
	// ErrNoSealKey: the operation needs the --auth-key-file key.
	ErrNoSealKey = errors.New("auth: no seal key (--auth-key-file) configured")
	// ErrWrongSealKey: a key's secret was sealed with another seal key.
	ErrWrongSealKey = errors.New("auth: key sealed with a different --auth-key-file key")
)

// SealKeySize is the size of the --auth-key-file key (AES-256).
const SealKeySize = 32

// LoadSealKey reads the seal key from path: 64 hex characters (a trailing
// newline is fine). Generate one with `openssl rand -hex 32`.
func LoadSealKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: seal key file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if len(s) != 2*SealKeySize {
		return nil, fmt.Errorf("auth: seal key file %s: want %d hex characters, found %d characters", path, 2*SealKeySize, len(s))
	}
	k, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("auth: seal key file %s: not hex: %w", path, err)
	}
	return k, nil
}

var principalRE = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,128}$`)

// ValidatePrincipalName checks a principal name: 1 to 128 characters of
// [A-Za-z0-9_.@-].
func ValidatePrincipalName(name string) error {
	if !principalRE.MatchString(name) {
		return fmt.Errorf("%w: principal name %q: want 1 to 128 characters of [A-Za-z0-9_.@-]", ErrInvalid, name)
	}
	return nil
}

// ValidateGrant checks a grant's table (a table name or "*") and level.
func ValidateGrant(g Grant) error {
	if g.Table != AllTables {
		if err := topology.ValidateTableName(g.Table); err != nil {
			return fmt.Errorf("%w: grant: %v", ErrInvalid, err)
		}
	}
	if g.Level < Read || g.Level > Admin {
		return fmt.Errorf("%w: grant on %q: level %s: want read, write or admin", ErrInvalid, g.Table, g.Level)
	}
	return nil
}

// Key is an API key as listed (never its secret).
type Key struct {
	ID        string
	Principal string
	Created   time.Time
	// CreatedBy is the subject that created it.
	CreatedBy string
}

// NewKey is a key just created: the only time its secret is known.
type NewKey struct {
	Key
	Secret string
}

// Token is the key's bearer token "<id>.<secret>".
func (k NewKey) Token() string { return k.ID + "." + k.Secret }

// grantDoc, principalDoc and keyDoc are the JSON documents in etcd.
type grantDoc struct {
	Table string `json:"table"`
	Level string `json:"level"`
}

type principalDoc struct {
	Name   string     `json:"name"`
	Grants []grantDoc `json:"grants"`
}

type keyDoc struct {
	ID           string    `json:"id"`
	Principal    string    `json:"principal"`
	Created      time.Time `json:"created"`
	CreatedBy    string    `json:"created_by"`
	SecretSHA256 string    `json:"secret_sha256"`
	// SealedSecret is base64(nonce || AES-256-GCM(secret)), with the key id
	// as additional data so a sealed secret cannot be moved to another key.
	SealedSecret string `json:"sealed_secret"`
	// SealKey is the fingerprint of the seal key that sealed it.
	SealKey string `json:"seal_key"`

	// hash is SecretSHA256 decoded, and secret the unsealed secret (or
	// unsealErr), both made once when the document is loaded: every
	// call checks them.
	hash      []byte
	secret    string
	unsealErr error
}

func (d keyDoc) key() Key {
	return Key{ID: d.ID, Principal: d.Principal, Created: d.Created, CreatedBy: d.CreatedBy}
}

// Store holds the principals and API keys of a cluster, in etcd under
// /veltrix/<cluster>/auth/: principals/<name> and keys/<id>. It keeps an
// in-memory copy current through a watch, so verifying a token never reads
// etcd; while etcd is unreachable it serves its last state.
type Store struct {
	etcd     *clientv3.Client
	prefix   string
	admins   map[string]bool
	aead     cipher.AEAD // nil without a seal key
	sealFP   string
	logger   *slog.Logger
	cancel   context.CancelFunc
	done     chan struct{}
	mu       sync.RWMutex
	cond     *sync.Cond // on mu: signalled when rev advances
	rev      int64
	prins    map[string]Principal
	keys     map[string]keyDoc
	restartW chan int64    // tests: re-watch from an old revision
	loaded   chan struct{} // closed after the first load
}

// NewStore loads the cluster's principals and keys, waiting for etcd until
// ctx ends, and follows their changes until Close. sealKey (LoadSealKey)
// may be nil: then CreateKey and SigningSecret fail with ErrNoSealKey.
// admins are the principals that are superusers (--auth-admins).
func NewStore(ctx context.Context, etcd *clientv3.Client, cluster string, sealKey []byte, admins []string, logger *slog.Logger) (*Store, error) {
	s, err := OpenStore(etcd, cluster, sealKey, admins, logger)
	if err != nil {
		return nil, err
	}
	select {
	case <-s.loaded:
		return s, nil
	case <-ctx.Done():
		s.Close()
		return nil, fmt.Errorf("auth: load principals and keys from etcd: %w", ctx.Err())
	}
}

// OpenStore is NewStore without the wait: the store starts empty (every
// token refused as unknown) and loads once etcd answers; Loaded is
// closed then. A service that may start while etcd is down uses it.
func OpenStore(etcd *clientv3.Client, cluster string, sealKey []byte, admins []string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Store{
		etcd: etcd, prefix: topology.NewKeys(cluster).Prefix() + "auth/",
		admins: map[string]bool{}, logger: logger, done: make(chan struct{}),
		loaded: make(chan struct{}), restartW: make(chan int64, 1),
		prins: map[string]Principal{}, keys: map[string]keyDoc{},
	}
	s.cond = sync.NewCond(&s.mu)
	for _, a := range admins {
		if a = strings.TrimSpace(a); a != "" {
			s.admins[a] = true
		}
	}
	if sealKey != nil {
		if len(sealKey) != SealKeySize {
			return nil, fmt.Errorf("auth: seal key: want %d bytes, got %d", SealKeySize, len(sealKey))
		}
		block, err := aes.NewCipher(sealKey)
		if err != nil {
			return nil, fmt.Errorf("auth: seal key: %w", err)
		}
		if s.aead, err = cipher.NewGCM(block); err != nil {
			return nil, fmt.Errorf("auth: seal key: %w", err)
		}
		s.sealFP = sealFingerprint(sealKey)
	}
	wctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.follow(wctx)
	return s, nil
}

// Loaded is closed once the store has loaded the principals and keys.
func (s *Store) Loaded() <-chan struct{} { return s.loaded }

// sealFingerprint names a seal key without revealing it.
func sealFingerprint(k []byte) string {
	h := sha256.Sum256(append([]byte("veltrix auth seal key\x00"), k...))
	return hex.EncodeToString(h[:8])
}

// Close stops following etcd.
func (s *Store) Close() {
	s.cancel()
	<-s.done
}

func (s *Store) principalKey(name string) string { return s.prefix + "principals/" + name }
func (s *Store) keyKey(id string) string         { return s.prefix + "keys/" + id }

// load reads every document and replaces the in-memory state.
func (s *Store) load(ctx context.Context) error {
	resp, err := s.etcd.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("auth: load principals and keys from etcd: %w", err)
	}
	prins, keys := map[string]Principal{}, map[string]keyDoc{}
	for _, kv := range resp.Kvs {
		s.applyTo(prins, keys, string(kv.Key), kv.Value, false)
	}
	s.mu.Lock()
	s.prins, s.keys, s.rev = prins, keys, resp.Header.Revision
	s.cond.Broadcast()
	s.mu.Unlock()
	return nil
}

// applyTo applies one put (or delete) of key k to the maps.
func (s *Store) applyTo(prins map[string]Principal, keys map[string]keyDoc, k string, v []byte, del bool) {
	rest := strings.TrimPrefix(k, s.prefix)
	switch {
	case strings.HasPrefix(rest, "principals/"):
		name := strings.TrimPrefix(rest, "principals/")
		if del {
			delete(prins, name)
			return
		}
		var d principalDoc
		if err := json.Unmarshal(v, &d); err != nil {
			s.logger.Error("auth: ignoring undecodable principal", "key", k, "err", err)
			return
		}
		p := Principal{Name: name}
		for _, g := range d.Grants {
			l, err := ParseLevel(g.Level)
			if err != nil {
				s.logger.Error("auth: ignoring bad grant", "key", k, "err", err)
				continue
			}
			p.Grants = append(p.Grants, Grant{Table: g.Table, Level: l})
		}
		prins[name] = p
	case strings.HasPrefix(rest, "keys/"):
		id := strings.TrimPrefix(rest, "keys/")
		if del {
			delete(keys, id)
			return
		}
		var d keyDoc
		if err := json.Unmarshal(v, &d); err != nil {
			s.logger.Error("auth: ignoring undecodable key", "key", k, "err", err)
			return
		}
		h, err := hex.DecodeString(d.SecretSHA256)
		if err != nil || len(h) != sha256.Size {
			s.logger.Error("auth: ignoring key with a bad secret_sha256", "key", k)
			return
		}
		d.hash = h
		d.secret, d.unsealErr = s.unseal(d)
		keys[id] = d
	}
}

// follow watches the prefix from the loaded revision on, each watch
// continuing where the last ended, and re-lists after a compaction.
func (s *Store) follow(ctx context.Context) {
	defer close(s.done)
	if !s.relist(ctx) {
		return
	}
	close(s.loaded)
	s.mu.RLock()
	rev := s.rev
	s.mu.RUnlock()
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.etcd.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		relist := false
	events:
		for {
			select {
			case r := <-s.restartW:
				rev = r
				break events
			case resp, ok := <-wch:
				if !ok {
					break events
				}
				if err := resp.Err(); err != nil {
					if resp.CompactRevision != 0 {
						relist = true
					}
					s.logger.Warn("auth: watch of principals and keys interrupted", "err", err)
					break events
				}
				s.mu.Lock()
				for _, ev := range resp.Events {
					s.applyTo(s.prins, s.keys, string(ev.Kv.Key), ev.Kv.Value, ev.Type == clientv3.EventTypeDelete)
				}
				if resp.Header.Revision > s.rev {
					s.rev = resp.Header.Revision
				}
				rev = s.rev
				s.cond.Broadcast()
				s.mu.Unlock()
			}
		}
		cancel()
		if relist && s.relist(ctx) {
			s.mu.RLock()
			rev = s.rev
			s.mu.RUnlock()
			s.logger.Info("auth: re-listed principals and keys after a compaction", "revision", rev)
		}
		if !relist {
			// A watch lost without a compaction (no leader, network):
			// pause before watching again from the same revision.
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// relist loads everything until it succeeds; false when ctx ended first.
func (s *Store) relist(ctx context.Context) bool {
	for ctx.Err() == nil {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.load(lctx)
		cancel()
		if err == nil {
			return true
		}
		s.logger.Warn("auth: load principals and keys", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return false
}

// waitRev waits (briefly) until the watch has applied revision rev, so
// the process that made a change sees it in its next call.
func (s *Store) waitRev(rev int64) {
	deadline := time.Now().Add(2 * time.Second)
	stop := time.AfterFunc(2*time.Second, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer stop.Stop()
	s.mu.Lock()
	for s.rev < rev && time.Now().Before(deadline) {
		s.cond.Wait()
	}
	s.mu.Unlock()
}

// Principal returns a principal and its grants.
func (s *Store) Principal(name string) (Principal, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.prins[name]
	if ok {
		p.Grants = slices.Clone(p.Grants)
	}
	return p, ok
}

// IsAdmin reports whether name is one of the --auth-admins.
func (s *Store) IsAdmin(name string) bool { return s.admins[name] }

// PrincipalSubject is the subject of principal name authenticated via
// via: its grants (none when unknown), a superuser when it is an admin.
func (s *Store) PrincipalSubject(name string, via Via) Subject {
	p, ok := s.Principal(name)
	if !ok {
		p = Principal{Name: name}
	}
	return Subject{Name: name, Via: via, Principal: &p, Superuser: s.admins[name]}
}

// Subject is the subject of a verified certificate's identity: a service
// (superuser) or a principal (ViaCert); ok false for the zero identity.
func (s *Store) Subject(id tlsx.Identity) (Subject, bool) {
	switch {
	case id.Role != "":
		return Service(id.Role), true
	case id.Principal != "":
		return s.PrincipalSubject(id.Principal, ViaCert), true
	}
	return Subject{}, false
}

// key returns the document of key id, ErrUnknownKey when absent.
func (s *Store) key(id string) (keyDoc, error) {
	s.mu.RLock()
	d, ok := s.keys[id]
	s.mu.RUnlock()
	if !ok {
		return keyDoc{}, ErrUnknownKey
	}
	return d, nil
}

// VerifyToken implements Credentials.
func (s *Store) VerifyToken(token string) (Subject, error) {
	id, secret, ok := strings.Cut(token, ".")
	if !ok || !validKeyID(id) || secret == "" {
		return Subject{}, errors.New("auth: malformed token: want <key id>.<secret>")
	}
	d, err := s.key(id)
	if err != nil {
		return Subject{}, err
	}
	got := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(got[:], d.hash) != 1 {
		return Subject{}, ErrBadSecret
	}
	sub := s.PrincipalSubject(d.Principal, ViaToken)
	sub.KeyID = id
	return sub, nil
}

// SigningSecret implements Credentials.
func (s *Store) SigningSecret(id string) (string, Subject, error) {
	d, err := s.key(id)
	if err != nil {
		return "", Subject{}, err
	}
	if d.unsealErr != nil {
		return "", Subject{}, d.unsealErr
	}
	secret := d.secret
	sub := s.PrincipalSubject(d.Principal, ViaSigV4)
	sub.KeyID = id
	return secret, sub, nil
}

func (s *Store) seal(id, secret string) (string, error) {
	if s.aead == nil {
		return "", ErrNoSealKey
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("auth: nonce: %w", err)
	}
	return base64.StdEncoding.EncodeToString(s.aead.Seal(nonce, nonce, []byte(secret), []byte(id))), nil
}

func (s *Store) unseal(d keyDoc) (string, error) {
	if s.aead == nil {
		return "", ErrNoSealKey
	}
	if d.SealKey != s.sealFP {
		return "", fmt.Errorf("%w: key %s was sealed with seal key %s, this process has %s", ErrWrongSealKey, d.ID, d.SealKey, s.sealFP)
	}
	b, err := base64.StdEncoding.DecodeString(d.SealedSecret)
	if err != nil || len(b) < s.aead.NonceSize() {
		return "", fmt.Errorf("auth: key %s: sealed secret is malformed", d.ID)
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, b[:n], b[n:], []byte(d.ID))
	if err != nil {
		return "", fmt.Errorf("auth: key %s: cannot unseal its secret: %w", d.ID, err)
	}
	return string(plain), nil
}

const keyIDAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

func validKeyID(id string) bool {
	if len(id) != 20 || !strings.HasPrefix(id, "VX") {
		return false
	}
	for _, c := range id[2:] {
		if !strings.ContainsRune(keyIDAlphabet, c) {
			return false
		}
	}
	return true
}

// ValidKeyID reports whether id has the form of a key id: "VX" and 18
// characters of [A-Z2-7].
func ValidKeyID(id string) bool { return validKeyID(id) }

func newKeyID() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("auth: key id: %w", err)
	}
	for i := range b {
		b[i] = keyIDAlphabet[int(b[i])%len(keyIDAlphabet)] // 256 % 32 == 0: uniform
	}
	return "VX" + string(b), nil
}

func newSecret() (string, error) {
	b := make([]byte, 30)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("auth: secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil // 40 characters
}

// SetGrants replaces a principal's grants, creating the principal when it
// does not exist.
func (s *Store) SetGrants(ctx context.Context, name string, grants []Grant) (Principal, error) {
	if err := ValidatePrincipalName(name); err != nil {
		return Principal{}, err
	}
	d := principalDoc{Name: name, Grants: []grantDoc{}}
	for _, g := range grants {
		if err := ValidateGrant(g); err != nil {
			return Principal{}, err
		}
		d.Grants = append(d.Grants, grantDoc{Table: g.Table, Level: g.Level.String()})
	}
	b, err := json.Marshal(d)
	if err != nil {
		return Principal{}, err
	}
	resp, err := s.etcd.Put(ctx, s.principalKey(name), string(b))
	if err != nil {
		return Principal{}, fmt.Errorf("auth: write principal %s: %w", name, err)
	}
	s.waitRev(resp.Header.Revision)
	return Principal{Name: name, Grants: slices.Clone(grants)}, nil
}

// ListPrincipals lists the principals in name order.
func (s *Store) ListPrincipals() []Principal {
	s.mu.RLock()
	out := make([]Principal, 0, len(s.prins))
	for _, p := range s.prins {
		p.Grants = slices.Clone(p.Grants)
		out = append(out, p)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Principal) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// DeletePrincipal removes a principal and revokes its keys, in one etcd
// transaction; it returns the ids of the keys revoked.
func (s *Store) DeletePrincipal(ctx context.Context, name string) ([]string, error) {
	if err := ValidatePrincipalName(name); err != nil {
		return nil, err
	}
	kresp, err := s.etcd.Get(ctx, s.prefix+"keys/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("auth: list keys of %s: %w", name, err)
	}
	ops := []clientv3.Op{clientv3.OpDelete(s.principalKey(name))}
	var ids []string
	for _, kv := range kresp.Kvs {
		var d keyDoc
		if json.Unmarshal(kv.Value, &d) == nil && d.Principal == name {
			ids = append(ids, d.ID)
			ops = append(ops, clientv3.OpDelete(string(kv.Key)))
		}
	}
	pk := s.principalKey(name)
	// Fails when the principal is missing, or a key was added since the
	// listing (then the caller retries; keys are rarely created at once).
	resp, err := s.etcd.Txn(ctx).
		If(clientv3.Compare(clientv3.Version(pk), ">", 0), clientv3.Compare(clientv3.ModRevision(s.prefix+"keys/").WithPrefix(), "<", kresp.Header.Revision+1)).
		Then(ops...).Commit()
	if err != nil {
		return nil, fmt.Errorf("auth: delete principal %s: %w", name, err)
	}
	if !resp.Succeeded {
		g, err := s.etcd.Get(ctx, pk, clientv3.WithCountOnly())
		if err != nil {
			return nil, fmt.Errorf("auth: delete principal %s: %w", name, err)
		}
		if g.Count == 0 {
			return nil, fmt.Errorf("%w %q", ErrUnknownPrincipal, name)
		}
		return nil, fmt.Errorf("auth: delete principal %s: its keys changed meanwhile; try again", name)
	}
	s.waitRev(resp.Header.Revision)
	slices.Sort(ids)
	return ids, nil
}

// CreateKey issues a key for principal (which must exist), recording
// createdBy. It needs the seal key.
func (s *Store) CreateKey(ctx context.Context, principal, createdBy string) (NewKey, error) {
	if err := ValidatePrincipalName(principal); err != nil {
		return NewKey{}, err
	}
	if s.aead == nil {
		return NewKey{}, ErrNoSealKey
	}
	id, err := newKeyID()
	if err != nil {
		return NewKey{}, err
	}
	secret, err := newSecret()
	if err != nil {
		return NewKey{}, err
	}
	sealed, err := s.seal(id, secret)
	if err != nil {
		return NewKey{}, err
	}
	sum := sha256.Sum256([]byte(secret))
	d := keyDoc{
		ID: id, Principal: principal, Created: time.Now().UTC().Truncate(time.Second), CreatedBy: createdBy,
		SecretSHA256: hex.EncodeToString(sum[:]), SealedSecret: sealed, SealKey: s.sealFP,
	}
	b, err := json.Marshal(d)
	if err != nil {
		return NewKey{}, err
	}
	pk, kk := s.principalKey(principal), s.keyKey(id)
	resp, err := s.etcd.Txn(ctx).
		If(clientv3.Compare(clientv3.Version(pk), ">", 0), clientv3.Compare(clientv3.Version(kk), "=", 0)).
		Then(clientv3.OpPut(kk, string(b))).Commit()
	if err != nil {
		return NewKey{}, fmt.Errorf("auth: create key for %s: %w", principal, err)
	}
	if !resp.Succeeded {
		return NewKey{}, fmt.Errorf("%w %q: create it (principal set) before its keys", ErrUnknownPrincipal, principal)
	}
	s.waitRev(resp.Header.Revision)
	return NewKey{Key: d.key(), Secret: secret}, nil
}

// ListKeys lists keys, of principal or (empty) all, by creation then id.
func (s *Store) ListKeys(principal string) []Key {
	s.mu.RLock()
	var out []Key
	for _, d := range s.keys {
		if principal == "" || d.Principal == principal {
			out = append(out, d.key())
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Key) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// RevokeKey deletes key id; ErrUnknownKey when there is none.
func (s *Store) RevokeKey(ctx context.Context, id string) error {
	if !validKeyID(id) {
		return fmt.Errorf("%w: key id %q: want VX and 18 characters of [A-Z2-7]", ErrInvalid, id)
	}
	resp, err := s.etcd.Delete(ctx, s.keyKey(id))
	if err != nil {
		return fmt.Errorf("auth: revoke key %s: %w", id, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("%w: %s", ErrUnknownKey, id)
	}
	s.waitRev(resp.Header.Revision)
	return nil
}

var (
	_ Credentials   = (*Store)(nil)
	_ Authenticator = (*Store)(nil)
)
