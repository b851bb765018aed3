package export_test

import (
	"bytes"
	"compress/gzip"
	"context"
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
	"github.com/veltrixdb/veltrix/services/migrator/internal/export"
	"github.com/veltrixdb/veltrix/services/migrator/internal/testexport"
)

// uncompressed is the real uncompressed size of the export's data files.
func uncompressed(t *testing.T, e *export.Export, dir string) int64 {
	t.Helper()
	var n int64
	for _, f := range e.Files {
		b, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		m, err := io.Copy(io.Discard, zr)
		if err != nil {
			t.Fatal(err)
		}
		n += m
	}
	return n
}

func sizeExport(t *testing.T) string {
	return writeExport(t, testexport.Options{},
		testexport.File{Lines: []string{testexport.Item(`"id":{"S":"a"},"v":{"S":"` + strings.Repeat("x", 5000) + `"}`), testexport.Item(`"id":{"S":"b"}`)}},
		testexport.File{Lines: []string{testexport.Item(`"id":{"S":"c"}`)}})
}

// TestUncompressedSize reads the data files' sizes from their gzip
// trailers, on disk and in S3 (4-byte Range requests), and gives up on a
// trailer that cannot be right.
func TestUncompressedSize(t *testing.T) {
	ctx := context.Background()
	dir := sizeExport(t)
	e := load(t, dir)
	want := uncompressed(t, e, dir)
	got, ok, err := e.UncompressedSize(ctx, 2)
	if err != nil || !ok || got != want {
		t.Fatalf("local: %d, %v, %v; want %d", got, ok, err, want)
	}

	t.Run("s3", func(t *testing.T) {
		ts := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
		defer ts.Close()
		t.Setenv("AWS_ACCESS_KEY_ID", "test")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
		t.Setenv("AWS_REGION", "us-east-1")
		o := export.AWSOptions{Endpoint: ts.URL, PathStyle: true}
		cli, err := export.NewS3Client(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("exp")}); err != nil {
			t.Fatal(err)
		}
		err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			_, err = cli.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("exp"), Key: aws.String("e/" + filepath.ToSlash(rel)), Body: bytes.NewReader(b)})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		st, err := export.OpenStore(ctx, "s3://exp/e", o)
		if err != nil {
			t.Fatal(err)
		}
		es, err := export.Load(ctx, st, "")
		if err != nil {
			t.Fatal(err)
		}
		if got, ok, err := es.UncompressedSize(ctx, 4); err != nil || !ok || got != want {
			t.Fatalf("s3: %d, %v, %v; want %d", got, ok, err, want)
		}
	})

	t.Run("implausible trailer", func(t *testing.T) {
		dir := sizeExport(t)
		e := load(t, dir)
		name := filepath.Join(dir, e.Files[0].Name)
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		copy(b[len(b)-4:], []byte{1, 0, 0, 0}) // ISIZE 1 for a file of many bytes
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if got, ok, err := e.UncompressedSize(ctx, 1); ok || err != nil {
			t.Fatalf("damaged trailer: %d, %v, %v; want unknown", got, ok, err)
		}
	})

	t.Run("missing file", func(t *testing.T) {
		dir := sizeExport(t)
		e := load(t, dir)
		if err := os.Remove(filepath.Join(dir, e.Files[1].Name)); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := e.UncompressedSize(ctx, 1); ok || err == nil || !strings.Contains(err.Error(), e.Files[1].Name) {
			t.Fatalf("missing file: ok %v, err %v; want unknown and an error naming it", ok, err)
		}
	})
}
