package dynamodb

import (
	"fmt"
	"net/http"
	"strings"
)

// SigV4 is a parsed AWS Signature Version 4 Authorization header:
//
//	AWS4-HMAC-SHA256 Credential=AKID/20261207/us-east-1/dynamodb/aws4_request,
//	  SignedHeaders=host;x-amz-date;x-amz-target, Signature=<64 hex>
type SigV4 struct {
	AccessKeyID   string
	Date          string // yyyymmdd
	Region        string
	Service       string
	SignedHeaders []string
	Signature     string
}

// parseSigV4 checks the shape of a SigV4 Authorization header. A missing
// or malformed header is MissingAuthenticationTokenException /
// IncompleteSignatureException, as DynamoDB answers; a well-formed one is
// returned for the Authenticator to verify.
func parseSigV4(h string) (*SigV4, error) {
	if strings.TrimSpace(h) == "" {
		return nil, &Error{Type: "MissingAuthenticationTokenException", Status: http.StatusBadRequest,
			Message: "Request is missing Authentication Token"}
	}
	bad := func(format string, args ...any) error {
		return &Error{Type: "IncompleteSignatureException", Status: http.StatusBadRequest,
			Message: "Authorization header: " + fmt.Sprintf(format, args...)}
	}
	algo, rest, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || algo != "AWS4-HMAC-SHA256" {
		return nil, bad("algorithm must be AWS4-HMAC-SHA256")
	}
	var s SigV4
	seen := map[string]bool{}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || v == "" {
			return nil, bad("%q is not key=value", strings.TrimSpace(part))
		}
		if seen[k] {
			return nil, bad("%s given twice", k)
		}
		seen[k] = true
		switch k {
		case "Credential":
			f := strings.Split(v, "/")
			if len(f) != 5 || f[0] == "" || f[4] != "aws4_request" || len(f[1]) != 8 || !allDigits(f[1]) {
				return nil, bad("Credential must be ACCESS_KEY/yyyymmdd/region/service/aws4_request, got %q", v)
			}
			s.AccessKeyID, s.Date, s.Region, s.Service = f[0], f[1], f[2], f[3]
		case "SignedHeaders":
			s.SignedHeaders = strings.Split(v, ";")
		case "Signature":
			if len(v) != 64 || !isHex(v) {
				return nil, bad("Signature must be 64 hex digits")
			}
			s.Signature = v
		default:
			return nil, bad("unknown field %q", k)
		}
	}
	for _, k := range []string{"Credential", "SignedHeaders", "Signature"} {
		if !seen[k] {
			return nil, bad("missing %s", k)
		}
	}
	return &s, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
