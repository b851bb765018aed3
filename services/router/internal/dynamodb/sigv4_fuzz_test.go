package dynamodb

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/veltrixdb/veltrix/pkg/auth"
)

// FuzzVerify signs random requests with the AWS SDK's signer at a random
// time, changes one signed part of some of them (or replaces the
// Authorization header with random text), and checks the verifier never
// panics, accepts every untouched request signed within ±15 minutes, and
// accepts no other. Its errors are DynamoDB's 400s.
func FuzzVerify(f *testing.F) {
	creds := newMemCreds()
	creds.add("AKFUZZ", "fuzz-secret", &auth.Principal{Name: "fuzz"})
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	v := NewSigV4Verifier(creds, func() time.Time { return t0 })

	f.Add([]byte(`{"TableName":"t"}`), "DynamoDB_20120810.GetItem", "x", int64(0), uint8(0), uint16(0), "")
	f.Add([]byte(`{}`), "DynamoDB_20120810.ListTables", "  a  b  ", int64(899), uint8(0), uint16(0), "")
	f.Add([]byte(`{}`), "DynamoDB_20120810.ListTables", "", int64(-901), uint8(0), uint16(0), "")
	f.Add([]byte(`{"TableName":"t"}`), "t", "", int64(10), uint8(1), uint16(3), "")
	f.Add([]byte{}, " ", "\t", int64(-10), uint8(2), uint16(0), "")
	f.Add([]byte("x"), "t", "e", int64(0), uint8(3), uint16(0), "AWS4-HMAC-SHA256 Credential=AKFUZZ/20261207/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature="+strings.Repeat("0", 64))
	f.Add([]byte("x"), "t", "e", int64(0), uint8(4), uint16(0), "")
	f.Add([]byte("x"), "t", "e", int64(0), uint8(5), uint16(63), "")
	f.Add([]byte("x"), "t", "e", int64(0), uint8(6), uint16(0), "")
	f.Add([]byte("x"), "t", "e", int64(0), uint8(7), uint16(0), "")
	f.Fuzz(func(t *testing.T, body []byte, target, extra string, skewSec int64, mutate uint8, pos uint16, authz string) {
		req, err := http.NewRequest(http.MethodPost, "http://veltrix.example:8000/", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Amz-Target", target)
		req.Header.Set("X-Extra", extra)
		signedAt := t0.Add(time.Duration(skewSec%3600) * time.Second)
		sum := sha256.Sum256(body)
		if err := v4.NewSigner().SignHTTP(t.Context(), aws.Credentials{AccessKeyID: "AKFUZZ", SecretAccessKey: "fuzz-secret"}, req,
			hex.EncodeToString(sum[:]), "dynamodb", "us-east-1", signedAt); err != nil {
			// Not a skipped test: an input the AWS SDK itself refuses
			// to sign has no signature to verify.
			t.Skipf("input the AWS SDK's signer refuses: %v", err)
		}
		orig, err := parseSigV4(req.Header.Get("Authorization"))
		if err != nil {
			t.Fatalf("the SDK's Authorization header does not parse: %v", err)
		}
		changed := true
		switch mutate % 8 {
		case 0:
			changed = false
		case 1:
			if len(body) == 0 {
				body = []byte{'x'}
			} else {
				body = bytes.Clone(body)
				body[int(pos)%len(body)] ^= 1
			}
		case 2:
			req.Header.Set("X-Amz-Target", target+"x")
		case 3:
			req.Header.Set("Authorization", authz)
		case 4:
			req.Header.Set("Authorization", strings.Replace(req.Header.Get("Authorization"), "AKFUZZ/", "AKFUZY/", 1))
		case 5:
			s := []byte(orig.Signature)
			i := int(pos) % len(s)
			s[i] = "123456789abcdef0"[strings.IndexByte("0123456789abcdef", s[i])]
			req.Header.Set("Authorization", strings.Replace(req.Header.Get("Authorization"), orig.Signature, string(s), 1))
		case 6:
			req.Header.Set("X-Amz-Date", signedAt.Add(time.Second).Format(amzDateFormat))
		case 7:
			req.Header.Set("X-Extra", extra+"y")
		}
		sig, err := parseSigV4(req.Header.Get("Authorization"))
		if err != nil {
			if mutate%8 != 3 {
				t.Fatalf("mutation %d: the header does not parse: %v", mutate%8, err)
			}
			return
		}
		subj, err := v.Authenticate(req, body, sig)
		inWindow := signedAt.Sub(t0).Abs() <= sigV4Window
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status != http.StatusBadRequest {
				t.Fatalf("error %v is not a DynamoDB 400", err)
			}
			if !changed && inWindow {
				t.Fatalf("a request signed %v from now, untouched, was refused: %v", signedAt.Sub(t0), err)
			}
			return
		}
		if !inWindow {
			t.Fatalf("a request signed %v from now was accepted", signedAt.Sub(t0))
		}
		if changed && !(mutate%8 == 3 && sig.Signature == orig.Signature) {
			t.Fatalf("mutation %d was accepted", mutate%8)
		}
		if subj.Name != "fuzz" || subj.Via != auth.ViaSigV4 {
			t.Fatalf("subject %+v", subj)
		}
	})
}
