package export_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/services/migrator/internal/export"
	"github.com/veltrixdb/veltrix/services/migrator/internal/testexport"
)

// samplesDir holds the real DynamoDB export manifests shared by the
// workspace (read in place, never copied).
const samplesDir = "../../../../../shared/testdata/dynamodb"

func samples(t *testing.T, rel string) string {
	t.Helper()
	p := filepath.Join(samplesDir, rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("real DynamoDB samples not available (%v); they live in <workspace>/shared/testdata/dynamodb", err)
	}
	return p
}

func writeExport(t *testing.T, o testexport.Options, files ...testexport.File) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := testexport.Write(dir, o, files...); err != nil {
		t.Fatal(err)
	}
	return dir
}

func load(t *testing.T, dir string) *export.Export {
	t.Helper()
	st, err := export.OpenStore(context.Background(), dir, export.AWSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := export.Load(context.Background(), st, "")
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func readLines(t *testing.T, e *export.Export, f export.File) (lines []string, errs []error) {
	t.Helper()
	l, err := e.OpenLines(context.Background(), f, "", 64)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for {
		b, err := l.Next()
		if err == io.EOF {
			return lines, errs
		}
		if err != nil {
			errs = append(errs, err)
			if errors.Is(err, export.ErrCorrupt) {
				return lines, errs
			}
			continue
		}
		lines = append(lines, string(b))
	}
}

func TestLoadLocal(t *testing.T) {
	dir := writeExport(t, testexport.Options{},
		testexport.File{Lines: []string{testexport.Item(`"id":{"S":"a"}`), testexport.Item(`"id":{"S":"b"}`)}},
		testexport.File{Lines: []string{testexport.Item(`"id":{"S":"c"}`)}})
	e := load(t, dir)
	if e.Incremental || e.Format != ddb.ExportDynamoDBJSON || !e.ExportTime.Equal(testexport.ExportTime) {
		t.Fatalf("export = incremental %v format %s time %s", e.Incremental, e.Format, e.ExportTime)
	}
	if len(e.Files) != 2 || e.Files[0].Name != "data/file00.json.gz" || e.Files[1].Index != 1 || e.ItemCount() != 3 {
		t.Fatalf("files = %+v", e.Files)
	}
	if len(e.Checksums) != 2 {
		t.Fatalf("checksums validated: %v, want both manifests", e.Checksums)
	}
	for _, f := range e.Files {
		if _, err := e.CheckMD5(context.Background(), f); err != nil {
			t.Fatal(err)
		}
	}
	got, errs := readLines(t, e, e.Files[0])
	if len(got) != 2 || len(errs) != 0 || got[1] != testexport.Item(`"id":{"S":"b"}`) {
		t.Fatalf("lines = %q, errs %v", got, errs)
	}
	// file:// URIs name the same folder.
	if _, err := export.OpenStore(context.Background(), "file://"+dir, export.AWSOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestChecksumFiles(t *testing.T) {
	files := []testexport.File{{Lines: []string{testexport.Item(`"id":{"S":"a"}`)}}}
	t.Run("checksum extension", func(t *testing.T) {
		e := load(t, writeExport(t, testexport.Options{ChecksumExt: ".checksum"}, files...))
		if len(e.Checksums) != 2 {
			t.Fatalf("validated %v", e.Checksums)
		}
	})
	t.Run("none", func(t *testing.T) {
		e := load(t, writeExport(t, testexport.Options{ChecksumExt: "-"}, files...))
		if len(e.Checksums) != 0 {
			t.Fatalf("validated %v without checksum files", e.Checksums)
		}
	})
	for _, name := range []string{"manifest-summary.json", "manifest-files.json"} {
		t.Run("damaged "+name, func(t *testing.T) {
			dir := writeExport(t, testexport.Options{}, files...)
			b, _ := os.ReadFile(filepath.Join(dir, name))
			if err := os.WriteFile(filepath.Join(dir, name), append(b, ' '), 0o644); err != nil {
				t.Fatal(err)
			}
			st, _ := export.OpenStore(context.Background(), dir, export.AWSOptions{})
			_, err := export.Load(context.Background(), st, "")
			if !errors.Is(err, export.ErrChecksum) || !strings.Contains(err.Error(), name) {
				t.Fatalf("err = %v, want a checksum mismatch naming %s", err, name)
			}
		})
	}
	t.Run("data file", func(t *testing.T) {
		dir := writeExport(t, testexport.Options{}, testexport.File{Lines: files[0].Lines, MD5: "1B2M2Y8AsgTpgAmY7PhCfg=="})
		e := load(t, dir)
		_, err := e.CheckMD5(context.Background(), e.Files[0])
		if !errors.Is(err, export.ErrChecksum) || !strings.Contains(err.Error(), "data/file00.json.gz") {
			t.Fatalf("err = %v, want a checksum mismatch naming the file", err)
		}
	})
}

func TestLines(t *testing.T) {
	long := strings.Repeat("x", 100)
	gz := testexport.Gzip("a\r\n\nb\n" + long + "\nc\nlast-without-newline")
	dir := writeExport(t, testexport.Options{}, testexport.File{Raw: gz})
	e := load(t, dir)
	got, errs := readLines(t, e, e.Files[0])
	want := []string{"a", "", "b", "c", "last-without-newline"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("lines = %q, want %q", got, want)
	}
	if len(errs) != 1 || !errors.Is(errs[0], export.ErrLineTooLong) || !strings.Contains(errs[0].Error(), "line 4") {
		t.Fatalf("errs = %v, want line 4 too long", errs)
	}

	// A truncated file: the lines before the damage read, then ErrCorrupt.
	var all strings.Builder
	for i := range 2000 {
		all.WriteString(strings.Repeat(string(rune('a'+i%26)), 20) + "\n")
	}
	full := testexport.Gzip(all.String())
	dir = writeExport(t, testexport.Options{}, testexport.File{Raw: full[:len(full)/2]})
	e = load(t, dir)
	got, errs = readLines(t, e, e.Files[0])
	if len(got) == 0 || len(got) >= 2000 || len(errs) != 1 || !errors.Is(errs[0], export.ErrCorrupt) {
		t.Fatalf("truncated: %d lines, errs %v; want some lines then ErrCorrupt", len(got), errs)
	}
	// Not gzip at all.
	dir = writeExport(t, testexport.Options{}, testexport.File{Raw: []byte("{\"Item\":{}}\n")})
	e = load(t, dir)
	if got, errs = readLines(t, e, e.Files[0]); len(got) != 0 || len(errs) != 1 || !errors.Is(errs[0], export.ErrCorrupt) {
		t.Fatalf("plain text: %q %v", got, errs)
	}
}

func TestMissing(t *testing.T) {
	if _, err := export.OpenStore(context.Background(), filepath.Join(t.TempDir(), "nope"), export.AWSOptions{}); !errors.Is(err, export.ErrNotExist) {
		t.Fatalf("missing dir: %v", err)
	}
	st, err := export.OpenStore(context.Background(), t.TempDir(), export.AWSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := export.Load(context.Background(), st, ""); !errors.Is(err, export.ErrNotExist) || !strings.Contains(err.Error(), "manifest-summary.json") {
		t.Fatalf("empty dir: %v", err)
	}
	for _, uri := range []string{"", "http://x/y", "s3://", "s3:///nobucket"} {
		if _, err := export.OpenStore(context.Background(), uri, export.AWSOptions{}); !errors.Is(err, export.ErrBadURI) {
			t.Errorf("OpenStore(%q) = %v, want ErrBadURI", uri, err)
		}
	}
}

func TestDataPathOutsideFolder(t *testing.T) {
	dir := writeExport(t, testexport.Options{}, testexport.File{Lines: []string{"x"}})
	mf := `{"itemCount":1,"md5Checksum":"","dataFileS3Key":"prefix/AWSDynamoDB/01717243200456-abcdef12/../../../etc/passwd"}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "manifest-files.json"), []byte(mf), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "manifest-files.md5"))
	st, _ := export.OpenStore(context.Background(), dir, export.AWSOptions{})
	if _, err := export.Load(context.Background(), st, ""); !errors.Is(err, export.ErrManifest) {
		t.Fatalf("err = %v, want ErrManifest for a key escaping the folder", err)
	}
}

// TestS3 serves an export from an in-process S3 (gofakes3) and reads it
// with the AWS SDK, path-style, as the migrator does.
func TestS3(t *testing.T) {
	ts := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	defer ts.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_REGION", "us-east-1")
	ctx := context.Background()
	aws3 := export.AWSOptions{Endpoint: ts.URL, PathStyle: true}
	cli, err := export.NewS3Client(ctx, aws3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("exports")}); err != nil {
		t.Fatal(err)
	}
	dir := writeExport(t, testexport.Options{},
		testexport.File{Lines: []string{testexport.Item(`"id":{"S":"a"}`), testexport.Item(`"id":{"S":"b"}`)}},
		testexport.File{Lines: []string{testexport.Item(`"id":{"S":"c"}`)}})
	for _, name := range []string{"manifest-summary.json", "manifest-summary.md5", "manifest-files.json", "manifest-files.md5", "data/file00.json.gz", "data/file01.json.gz"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("exports"), Key: aws.String("tables/sessions/" + name), Body: bytes.NewReader(b)}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := export.OpenStore(ctx, "s3://exports/tables/sessions", aws3)
	if err != nil {
		t.Fatal(err)
	}
	e, err := export.Load(ctx, st, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Files) != 2 || len(e.Checksums) != 2 || e.ItemCount() != 3 {
		t.Fatalf("export from S3: files %+v checksums %v", e.Files, e.Checksums)
	}
	etag, err := e.CheckMD5(ctx, e.Files[0])
	if err != nil {
		t.Fatal(err)
	}
	l, err := e.OpenLines(ctx, e.Files[0], etag, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	n := 0
	for {
		if _, err := l.Next(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("read %d lines from S3, want 2", n)
	}
	// A missing export is reported as such.
	st, _ = export.OpenStore(ctx, "s3://exports/elsewhere/", aws3)
	if _, err := export.Load(ctx, st, ""); !errors.Is(err, export.ErrNotExist) {
		t.Fatalf("missing S3 export: %v", err)
	}
}

// TestRealManifests parses the manifests of real DynamoDB exports and
// validates their checksums.
func TestRealManifests(t *testing.T) {
	ctx := context.Background()
	t.Run("full export with md5 files", func(t *testing.T) {
		e := load(t, samples(t, "export-full-real"))
		if len(e.Checksums) != 2 {
			t.Fatalf("checksums validated: %v, want both manifests", e.Checksums)
		}
		if e.Format != ddb.ExportDynamoDBJSON || e.Incremental || e.ExportTime.Format("2006-01-02T15:04:05.000Z") != "2022-11-12T04:30:50.456Z" {
			t.Fatalf("summary: %+v", e.Summary)
		}
		if len(e.Files) != 1 || e.Files[0].Name != "data/enpvklgbwq7gta42yshirxd6ea.json.gz" || e.Files[0].ItemCount != 6 || e.Summary.ItemCount != 6 {
			t.Fatalf("files: %+v", e.Files)
		}
	})
	t.Run("full export with an s3Prefix", func(t *testing.T) {
		e := load(t, samples(t, "export-full-airline"))
		if len(e.Files) != 7 || e.ItemCount() != 59871 || e.Summary.ItemCount != 59871 {
			t.Fatalf("files: %d, items %d (summary %d)", len(e.Files), e.ItemCount(), e.Summary.ItemCount)
		}
		for _, f := range e.Files {
			if !strings.HasPrefix(f.Name, "data/") || !strings.HasSuffix(f.Name, ".json.gz") || f.MD5 == "" {
				t.Fatalf("file %+v", f)
			}
		}
	})
	t.Run("incremental summary", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(samples(t, "export-incremental"), "manifest-summary.incremental.json"))
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir() // the sample has no manifest-files.json: pair it with an empty one
		os.WriteFile(filepath.Join(dir, "manifest-summary.json"), b, 0o644)
		os.WriteFile(filepath.Join(dir, "manifest-files.json"), nil, 0o644)
		st, _ := export.OpenStore(ctx, dir, export.AWSOptions{})
		e, err := export.Load(ctx, st, "")
		if err != nil {
			t.Fatal(err)
		}
		if !e.Incremental || e.Format != ddb.ExportDynamoDBJSON || e.Summary.ItemCount != 169928274 || e.Summary.OutputView != "NEW_AND_OLD_IMAGES" {
			t.Fatalf("summary: %+v", e.Summary)
		}
	})
}
