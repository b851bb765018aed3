package dynamodb

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/veltrixdb/veltrix/pkg/auth"
)

// SigV4 verification (docs/design.md, "DynamoDB endpoint: SigV4 and
// permissions"), as AWS specifies it for header-signed requests:
//
//	canonical request = method \n canonical URI \n canonical query \n
//	                    canonical headers \n signed headers \n hex(sha256(body))
//	string to sign    = "AWS4-HMAC-SHA256" \n amzdate \n scope \n hex(sha256(canonical request))
//	signing key       = HMAC chain "AWS4"+secret → date → region → service → "aws4_request"
//
// The body hashed is the bytes as received, before gzip decoding: that
// is what the client signed. Any region is accepted (Veltrix is
// self-hosted; the region only enters the key derivation); the service
// must be "dynamodb".

// sigV4Window is how far X-Amz-Date may be from the router's clock, as AWS
// allows.
const sigV4Window = 15 * time.Minute

// amzDateFormat is ISO 8601 basic format, X-Amz-Date's.
const amzDateFormat = "20060102T150405Z"

// The messages DynamoDB answers with.
const (
	msgUnrecognizedClient = "The security token included in the request is invalid."
	msgSignatureMismatch  = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)

func invalidSignature(format string, args ...any) *Error {
	return &Error{Type: "InvalidSignatureException", Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

func incompleteSignature(format string, args ...any) *Error {
	return &Error{Type: "IncompleteSignatureException", Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

// sigV4Verifier verifies SigV4 signatures against issued API keys.
type sigV4Verifier struct {
	creds auth.Credentials
	now   func() time.Time

	// keys caches derived signing keys, as AWS's own clients do: the
	// four-HMAC derivation depends only on the secret and the scope,
	// which change once a day per key. Bounded: cleared when full.
	mu   sync.Mutex
	keys map[signingScope]signingEntry
}

// signingScope is what a derived signing key depends on besides the secret.
type signingScope struct{ keyID, date, region string }

type signingEntry struct {
	secret string // the secret it was derived from (a re-issued id must not hit)
	key    []byte
}

// maxSigningKeys bounds the signing key cache.
const maxSigningKeys = 4096

// signingKey returns the signing key of secret in scope, derived once.
func (v *sigV4Verifier) signingKey(keyID, secret, date, region, service string) []byte {
	sc := signingScope{keyID, date, region}
	v.mu.Lock()
	e, ok := v.keys[sc]
	v.mu.Unlock()
	if ok && e.secret == secret {
		return e.key
	}
	k := signingKey(secret, date, region, service)
	v.mu.Lock()
	if len(v.keys) >= maxSigningKeys {
		clear(v.keys)
	}
	v.keys[sc] = signingEntry{secret: secret, key: k}
	v.mu.Unlock()
	return k
}

// NewSigV4Verifier returns an Authenticator that verifies each request's
// SigV4 signature with the secret creds holds for its access key, and
// answers with the key's subject. now is the clock the ±15 minute window
// is measured by (nil: time.Now).
func NewSigV4Verifier(creds auth.Credentials, now func() time.Time) Authenticator {
	if now == nil {
		now = time.Now
	}
	return &sigV4Verifier{creds: creds, now: now, keys: map[signingScope]signingEntry{}}
}

// Authenticate implements Authenticator.
func (v *sigV4Verifier) Authenticate(r *http.Request, rawBody []byte, sig *SigV4) (auth.Subject, error) {
	if sig == nil {
		return auth.Subject{}, &Error{Type: "MissingAuthenticationTokenException", Status: http.StatusBadRequest,
			Message: "Request is missing Authentication Token"}
	}
	if sig.Service != "dynamodb" {
		return auth.Subject{}, invalidSignature("Credential should be scoped to correct service: 'dynamodb'. ")
	}
	if err := checkSignedHeaders(sig.SignedHeaders); err != nil {
		return auth.Subject{}, err
	}
	amzDate, at, err := signingTime(r, sig.SignedHeaders)
	if err != nil {
		return auth.Subject{}, err
	}
	if amzDate[:8] != sig.Date {
		return auth.Subject{}, invalidSignature("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from '%s'.",
			sig.Date, amzDate[:8], amzDate)
	}
	now := v.now().UTC()
	if at.Before(now.Add(-sigV4Window)) {
		return auth.Subject{}, invalidSignature("Signature expired: %s is now earlier than %s (%s - 15 min.)",
			amzDate, now.Add(-sigV4Window).Format(amzDateFormat), now.Format(amzDateFormat))
	}
	if at.After(now.Add(sigV4Window)) {
		return auth.Subject{}, invalidSignature("Signature not yet current: %s is still later than %s (%s + 15 min.)",
			amzDate, now.Add(sigV4Window).Format(amzDateFormat), now.Format(amzDateFormat))
	}
	sum := sha256.Sum256(rawBody)
	payloadHash := hex.EncodeToString(sum[:])
	if hs := r.Header.Values("X-Amz-Content-Sha256"); len(hs) > 0 && (len(hs) > 1 || hs[0] != payloadHash) {
		return auth.Subject{}, invalidSignature("The provided 'x-amz-content-sha256' header does not match what was computed.")
	}
	secret, subj, err := v.creds.SigningSecret(sig.AccessKeyID)
	switch {
	case errors.Is(err, auth.ErrUnknownKey):
		return auth.Subject{}, &Error{Type: "UnrecognizedClientException", Status: http.StatusBadRequest, Message: msgUnrecognizedClient}
	case err != nil:
		return auth.Subject{}, unavailablef("cannot check the access key: %v", err)
	}
	scope := sig.Date + "/" + sig.Region + "/" + sig.Service + "/aws4_request"
	creq := canonicalRequest(r, sig.SignedHeaders, payloadHash)
	crSum := sha256.Sum256([]byte(creq))
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(crSum[:])
	// The service is always "dynamodb" here (checked above).
	key := v.signingKey(sig.AccessKeyID, secret, sig.Date, sig.Region, sig.Service)
	want := hmacSHA256(key, []byte(toSign))
	got, err := hex.DecodeString(sig.Signature)
	if err != nil || !hmac.Equal(got, want) {
		return auth.Subject{}, invalidSignature("%s", msgSignatureMismatch)
	}
	subj.Via = auth.ViaSigV4
	if subj.KeyID == "" {
		subj.KeyID = sig.AccessKeyID
	}
	return subj, nil
}

// checkSignedHeaders: lower-case names, no empty or repeated one, and
// "host" among them (AWS refuses a signature that does not cover Host).
func checkSignedHeaders(names []string) error {
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if n == "" || n != strings.ToLower(n) || strings.ContainsAny(n, " \t:") {
			return incompleteSignature("Authorization header: SignedHeaders must be lower-case header names separated by ';', got %q", strings.Join(names, ";"))
		}
		if seen[n] {
			return incompleteSignature("Authorization header: SignedHeaders names %q twice", n)
		}
		seen[n] = true
	}
	if !seen["host"] {
		return incompleteSignature("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
	}
	return nil
}

// signingTime is the request's signing time: X-Amz-Date, which must then
// be signed, else a signed Date header (HTTP date), as AWS specifies.
func signingTime(r *http.Request, signed []string) (string, time.Time, error) {
	has := func(n string) bool {
		for _, s := range signed {
			if s == n {
				return true
			}
		}
		return false
	}
	if d := r.Header.Get("X-Amz-Date"); d != "" {
		t, err := time.Parse(amzDateFormat, d)
		if err != nil || len(d) != len(amzDateFormat) {
			return "", time.Time{}, incompleteSignature("Date must be in ISO-8601 'basic format'. Got '%s'. See http://en.wikipedia.org/wiki/ISO_8601", d)
		}
		if !has("x-amz-date") {
			return "", time.Time{}, incompleteSignature("Authorization header: X-Amz-Date is present but not among SignedHeaders")
		}
		return d, t.UTC(), nil
	}
	if d := r.Header.Get("Date"); d != "" && has("date") {
		t, err := http.ParseTime(d)
		if err != nil {
			return "", time.Time{}, incompleteSignature("Date header %q is not an HTTP date", d)
		}
		t = t.UTC()
		return t.Format(amzDateFormat), t, nil
	}
	return "", time.Time{}, incompleteSignature("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
}

// canonicalRequest is AWS's canonical request of r for the signed
// headers, as the AWS SDKs build it (URI escaped once more, query sorted
// by name then value, header values trimmed with runs of spaces collapsed
// and repeated headers comma-joined).
func canonicalRequest(r *http.Request, signed []string, payloadHash string) string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	b.WriteString(awsEscape(path, false))
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(r.URL.RawQuery))
	b.WriteByte('\n')
	for _, name := range signed {
		b.WriteString(name)
		b.WriteByte(':')
		for i, val := range headerValues(r, name) {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strings.TrimSpace(collapseSpaces(val)))
		}
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signed, ";"))
	b.WriteByte('\n')
	b.WriteString(payloadHash)
	return b.String()
}

// headerValues are the values of a signed header as the client sent them:
// Go's server moves Host to r.Host (and may move Content-Length to
// r.ContentLength).
func headerValues(r *http.Request, name string) []string {
	switch name {
	case "host":
		h := r.Host
		if h == "" {
			h = r.URL.Host
		}
		return []string{h}
	case "content-length":
		if vs := r.Header.Values("Content-Length"); len(vs) > 0 {
			return vs
		}
		if r.ContentLength >= 0 {
			return []string{strconv.FormatInt(r.ContentLength, 10)}
		}
		return nil
	}
	if vs, ok := r.Header[http.CanonicalHeaderKey(name)]; ok {
		return vs
	}
	return r.Header[name] // set without canonicalisation
}

// canonicalQuery sorts the query's parameters by name then value, each
// escaped as AWS escapes (RFC 3986 unreserved characters kept).
func canonicalQuery(raw string) string {
	if raw == "" {
		return ""
	}
	q, _ := url.ParseQuery(raw) // what does not parse cannot match the client's signature
	type kv struct{ k, v string }
	var ps []kv
	for k, vs := range q {
		for _, v := range vs {
			ps = append(ps, kv{awsEscape(k, true), awsEscape(v, true)})
		}
	}
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].k != ps[j].k {
			return ps[i].k < ps[j].k
		}
		return ps[i].v < ps[j].v
	})
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

// awsEscape percent-encodes every byte but RFC 3986's unreserved
// characters (and '/' unless encodeSlash).
func awsEscape(s string, encodeSlash bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '/' && !encodeSlash {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// collapseSpaces replaces each run of spaces with one.
func collapseSpaces(s string) string {
	if !strings.Contains(s, "  ") {
		return s
	}
	var b strings.Builder
	space := false
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			if space {
				continue
			}
			space = true
		} else {
			space = false
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func signingKey(secret, date, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), []byte(date))
	k = hmacSHA256(k, []byte(region))
	k = hmacSHA256(k, []byte(service))
	return hmacSHA256(k, []byte("aws4_request"))
}

func hmacSHA256(key, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil)
}
