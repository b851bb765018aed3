package awsconf

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const credsINI = `[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key = secret-default

[prod]
aws_access_key_id = AKIDPROD
aws_secret_access_key = secret-prod
`

// isolate points the SDK at no shared files of the machine running the
// test and puts other credentials in the environment, which a credentials
// reference must win over.
func isolate(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "no-config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "no-credentials"))
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret-env")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	f := filepath.Join(dir, "credentials")
	if err := os.WriteFile(f, []byte(credsINI), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestLoad(t *testing.T) {
	file := isolate(t)
	ctx := context.Background()
	cases := []struct {
		name   string
		o      Options
		wantID string
		errHas []string
	}{
		{"environment", Options{}, "AKIDENV", nil},
		{"profile from a file", Options{Profile: "prod", CredentialsFile: file}, "AKIDPROD", nil},
		{"file alone reads its default profile", Options{CredentialsFile: file}, "AKIDDEFAULT", nil},
		{"unknown profile", Options{Profile: "nope", CredentialsFile: file}, "", []string{`AWS profile "nope" not found`, file}},
		{"unknown profile, default files", Options{Profile: "nope"}, "", []string{`AWS profile "nope" not found`}},
		{"relative file", Options{CredentialsFile: "creds"}, "", []string{`"creds"`, "absolute path"}},
		{"missing file", Options{CredentialsFile: file + ".gone"}, "", []string{file + ".gone"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(ctx, tc.o)
			if tc.errHas != nil {
				if !errors.Is(err, ErrCredentials) {
					t.Fatalf("err = %v, want ErrCredentials", err)
				}
				for _, s := range tc.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			creds, err := cfg.Credentials.Retrieve(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if creds.AccessKeyID != tc.wantID {
				t.Fatalf("access key %q, want %q", creds.AccessKeyID, tc.wantID)
			}
			if cfg.Region != DefaultRegion {
				t.Errorf("region %q, want %q", cfg.Region, DefaultRegion)
			}
		})
	}
}
