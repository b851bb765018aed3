package jobs

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/migrator/internal/export"
	"github.com/veltrixdb/veltrix/services/migrator/internal/testexport"
)

// keyRecorder is an S3 server (gofakes3, which accepts any signature)
// that records the access key id each request was signed with.
type keyRecorder struct {
	mu   sync.Mutex
	keys map[string]int
}

var credentialRE = regexp.MustCompile(`Credential=([^/]+)/`)

func (k *keyRecorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := "(unsigned)"
		if m := credentialRE.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
			id = m[1]
		}
		k.mu.Lock()
		k.keys[id]++
		k.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (k *keyRecorder) take() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := k.keys
	k.keys = map[string]int{}
	return out
}

// TestImportS3CredentialsByReference imports an export from S3 with a
// profile of a credentials file named in the job: every S3 request is
// signed with that profile's key (not the environment's), the job stores
// only the profile name and path, and an unknown profile fails the job
// with a message naming it.
func TestImportS3CredentialsByReference(t *testing.T) {
	dir := isolateAWS(t, "AKIDENV", "secret-env")
	const secret = "wJalrXUtnFEMI-prod-secret"
	creds := filepath.Join(dir, "credentials")
	if err := os.WriteFile(creds, []byte("[prod]\naws_access_key_id = AKIDPROD\naws_secret_access_key = "+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	rec := &keyRecorder{keys: map[string]int{}}
	ts := httptest.NewServer(rec.wrap(gofakes3.New(s3mem.New()).Server()))
	defer ts.Close()
	ctx := context.Background()
	cli, err := export.NewS3Client(ctx, export.AWSOptions{Endpoint: ts.URL, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("exports")}); err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(dir, "export")
	if _, err := testexport.Write(local, testexport.Options{}, testexport.File{Lines: goodLines("s3-", 25)}, testexport.File{Lines: goodLines("s3b-", 15)}); err != nil {
		t.Fatal(err)
	}
	uploadExport(t, cli, local, "exports", "sessions/")
	if got := rec.take(); len(got) != 1 || got["AKIDENV"] == 0 {
		t.Fatalf("upload signed with %v, want the environment's key", got)
	}

	store := newStore(t)
	fake := newFake()
	startMigrator(t, store, fake, "a")
	s3Job := func(profile string) *migratorv1.Job {
		return importJob("s3://exports/sessions", func(s *migratorv1.ImportSpec) {
			s.GetExport().Aws = &migratorv1.AwsOptions{Endpoint: ts.URL, S3PathStyle: true, Profile: profile, CredentialsFile: creds}
		})
	}

	job := createJob(t, store, s3Job("prod"))
	got := waitJob(t, store, job.GetId(), 30*time.Second)
	if got.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED || got.GetProgress().GetItemsWritten() != 40 {
		t.Fatalf("S3 import with a profile: %s %q %v", got.GetState(), got.GetError(), got.GetProgress())
	}
	if keys := rec.take(); len(keys) != 1 || keys["AKIDPROD"] == 0 {
		t.Fatalf("the import's S3 requests were signed with %v; want only the profile's key AKIDPROD", keys)
	}
	resp, err := store.Client().Get(ctx, store.jobKey(job.GetId()))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("read the stored job: %v", err)
	}
	doc := string(resp.Kvs[0].Value)
	if strings.Contains(doc, secret) || strings.Contains(doc, "AKIDPROD") || !strings.Contains(doc, `"profile":"prod"`) || !strings.Contains(doc, creds) {
		t.Fatalf("stored job must hold the profile name and the file's path only:\n%s", doc)
	}

	bad := createJob(t, store, s3Job("nope"))
	got = waitJob(t, store, bad.GetId(), 30*time.Second)
	if got.GetState() != migratorv1.JobState_JOB_STATE_FAILED || !strings.Contains(got.GetError(), `AWS profile "nope" not found in `+creds) {
		t.Fatalf("import with an unknown profile: %s %q; want FAILED naming the profile and the file", got.GetState(), got.GetError())
	}
	if keys := rec.take(); len(keys) != 0 {
		t.Fatalf("a job with an unknown profile sent requests signed with %v", keys)
	}
}

// isolateAWS points the SDK at no shared files of the machine running the
// test and puts the access key id and secret in the environment; it
// returns a temporary folder.
func isolateAWS(t *testing.T, keyID, secret string) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "no-config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "no-credentials"))
	t.Setenv("AWS_ACCESS_KEY_ID", keyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_PROFILE", "")
	return dir
}

// uploadExport copies the export folder local to bucket under prefix.
func uploadExport(t *testing.T, cli *s3.Client, local, bucket, prefix string) {
	t.Helper()
	err := filepath.WalkDir(local, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(local, path)
		_, err = cli.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(prefix + filepath.ToSlash(rel)), Body: bytes.NewReader(b)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
