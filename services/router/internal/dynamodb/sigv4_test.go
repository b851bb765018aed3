package dynamodb

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSigV4(t *testing.T) {
	sig := strings.Repeat("ab", 32)
	good := "AWS4-HMAC-SHA256 Credential=AKID/20261207/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + sig
	s, err := parseSigV4(good)
	if err != nil {
		t.Fatal(err)
	}
	if s.AccessKeyID != "AKID" || s.Date != "20261207" || s.Region != "us-east-1" || s.Service != "dynamodb" ||
		len(s.SignedHeaders) != 2 || s.Signature != sig {
		t.Fatalf("parsed %+v", s)
	}
	for _, tc := range []struct{ h, typ, msg string }{
		{"", "MissingAuthenticationTokenException", "missing Authentication Token"},
		{"Basic abc", "IncompleteSignatureException", "AWS4-HMAC-SHA256"},
		{"AWS4-HMAC-SHA256 Credential=AKID/2026/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=" + sig, "IncompleteSignatureException", "Credential"},
		{"AWS4-HMAC-SHA256 Credential=AKID/20261207/us-east-1/dynamodb/aws4_request, SignedHeaders=host", "IncompleteSignatureException", "missing Signature"},
		{"AWS4-HMAC-SHA256 Credential=AKID/20261207/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=xyz", "IncompleteSignatureException", "64 hex"},
		{"AWS4-HMAC-SHA256 Credential=AKID/20261207/us-east-1/dynamodb/aws4_request, Credential=B/20261207/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=" + sig, "IncompleteSignatureException", "twice"},
		{"AWS4-HMAC-SHA256 Foo=bar", "IncompleteSignatureException", "unknown field"},
	} {
		_, err := parseSigV4(tc.h)
		var e *Error
		if !errors.As(err, &e) || e.Type != tc.typ || !strings.Contains(e.Message, tc.msg) || e.Status != 400 {
			t.Errorf("%q: %v, want %s containing %q", tc.h, err, tc.typ, tc.msg)
		}
	}
}

// FuzzParseSigV4: any header either parses into a signature whose fields
// obey the shape, or is refused with one of the two DynamoDB errors; it
// never panics.
func FuzzParseSigV4(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=AKID/20261207/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=" + strings.Repeat("0f", 32))
	f.Add("")
	f.Add("AWS4-HMAC-SHA256 ")
	f.Add("AWS4-HMAC-SHA256 Credential=/////, SignedHeaders=, Signature==")
	f.Add("AWS4-HMAC-SHA256 ,,,")
	f.Fuzz(func(t *testing.T, h string) {
		s, err := parseSigV4(h)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || (e.Type != "MissingAuthenticationTokenException" && e.Type != "IncompleteSignatureException") {
				t.Fatalf("%q: unexpected error %v", h, err)
			}
			return
		}
		if s.AccessKeyID == "" || len(s.Date) != 8 || len(s.Signature) != 64 || len(s.SignedHeaders) == 0 {
			t.Fatalf("%q parsed into %+v", h, s)
		}
	})
}
