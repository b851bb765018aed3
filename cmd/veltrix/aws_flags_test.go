package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAWSCredentialFlags checks that --aws-profile and
// --aws-credentials-file reach the job spec as references, the file made
// absolute.
func TestAWSCredentialFlags(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	m := mappingFlags{region: "eu-west-1", awsProfile: "prod", awsCredentialsFile: filepath.Join("secrets", "aws")}
	o, err := m.aws()
	if err != nil {
		t.Fatal(err)
	}
	if o.GetProfile() != "prod" || o.GetCredentialsFile() != filepath.Join(wd, "secrets", "aws") || o.GetRegion() != "eu-west-1" {
		t.Fatalf("aws options = %v", o)
	}
	m = mappingFlags{}
	if o, err = m.aws(); err != nil || o.GetCredentialsFile() != "" || o.GetProfile() != "" {
		t.Fatalf("no flags: %v, %v", o, err)
	}
	// The flags exist on import, verify and stream.
	for _, cmd := range []string{"import", "verify", "stream"} {
		code, _, stderr := runCLI(t, nil, cmd, "--aws-profile", "p", "--aws-credentials-file", "f")
		if code != 2 || stderr == "" {
			t.Fatalf("veltrix %s with the AWS flags: exit %d %q (want a usage error about other flags, not unknown flags)", cmd, code, stderr)
		}
		if strings.Contains(stderr, "flag provided but not defined") {
			t.Fatalf("veltrix %s: %s", cmd, stderr)
		}
	}
}
