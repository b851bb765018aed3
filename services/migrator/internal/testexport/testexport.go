// Package testexport writes small DynamoDB export folders for the
// migrator's unit tests: given the lines of each data file, it writes the
// gzip files and manifests with their checksum files, as a real export
// has them. (The realistic generator for integration tests and benchmarks
// is pkg/exportgen.)
package testexport

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ExportTime is the exportTime of every full export written here.
var ExportTime = time.Date(2024, 6, 1, 12, 0, 0, 456_000_000, time.UTC)

// Options shape an export.
type Options struct {
	// Format is DYNAMODB_JSON (default) or ION.
	Format string
	// Incremental writes an INCREMENTAL_EXPORT summary.
	Incremental bool
	// ChecksumExt is the checksum files' extension: ".md5" (default),
	// ".checksum", or "-" for none.
	ChecksumExt string
	// SummaryItemCount overrides the summary's itemCount (default: the
	// sum of the files').
	SummaryItemCount *int
}

// File is one data file's content.
type File struct {
	// Lines are the data lines, each written with a '\n' after it.
	Lines []string
	// Raw, when set, is written as the gzip object instead of Lines.
	Raw []byte
	// ItemCount overrides the manifest's itemCount (default len(Lines)).
	ItemCount *int
	// MD5 overrides the manifest's md5Checksum.
	MD5 string
	// Missing lists the file in the manifest without writing it.
	Missing bool
}

// Write writes an export into dir and returns the data file names.
func Write(dir string, o Options, files ...File) ([]string, error) {
	if o.Format == "" {
		o.Format = "DYNAMODB_JSON"
	}
	if o.ChecksumExt == "" {
		o.ChecksumExt = ".md5"
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, err
	}
	root := "prefix/AWSDynamoDB/01717243200456-abcdef12/"
	ext := ".json.gz"
	if o.Format == "ION" {
		ext = ".ion.gz"
	}
	var manifest bytes.Buffer
	var names []string
	total := 0
	for i, f := range files {
		name := fmt.Sprintf("data/file%02d%s", i, ext)
		names = append(names, name)
		gz := f.Raw
		if gz == nil {
			gz = Gzip(strings.Join(f.Lines, "\n") + lineEnd(f.Lines))
		}
		if !f.Missing {
			if err := os.WriteFile(filepath.Join(dir, name), gz, 0o644); err != nil {
				return nil, err
			}
		}
		sum := md5.Sum(gz)
		m := map[string]any{
			"itemCount":     len(f.Lines),
			"md5Checksum":   base64.StdEncoding.EncodeToString(sum[:]),
			"etag":          fmt.Sprintf("%x-1", sum),
			"dataFileS3Key": root + name,
		}
		if f.ItemCount != nil {
			m["itemCount"] = *f.ItemCount
		}
		if f.MD5 != "" {
			m["md5Checksum"] = f.MD5
		}
		total += m["itemCount"].(int)
		b, _ := json.Marshal(m)
		manifest.Write(b)
		manifest.WriteByte('\n')
	}
	if err := writeWithSum(dir, "manifest-files", manifest.Bytes(), o.ChecksumExt); err != nil {
		return nil, err
	}
	sum := map[string]any{
		"version":            "2020-06-30",
		"exportArn":          "arn:aws:dynamodb:us-east-1:123456789012:table/t/export/01717243200456-abcdef12",
		"s3Bucket":           "bucket",
		"s3Prefix":           "prefix",
		"manifestFilesS3Key": root + "manifest-files.json",
		"itemCount":          total,
		"outputFormat":       o.Format,
		"exportTime":         ExportTime.Format("2006-01-02T15:04:05.000Z"),
	}
	if o.SummaryItemCount != nil {
		sum["itemCount"] = *o.SummaryItemCount
	}
	if o.Incremental {
		delete(sum, "exportTime")
		sum["version"] = "2023-08-01"
		sum["exportType"] = "INCREMENTAL_EXPORT"
		sum["exportFromTime"] = "2024-06-01T11:00:00.000Z"
		sum["exportToTime"] = "2024-06-01T12:00:00.000Z"
	}
	b, _ := json.Marshal(sum)
	return names, writeWithSum(dir, "manifest-summary", b, o.ChecksumExt)
}

func lineEnd(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return "\n"
}

func writeWithSum(dir, name string, data []byte, ext string) error {
	if err := os.WriteFile(filepath.Join(dir, name+".json"), data, 0o644); err != nil {
		return err
	}
	if ext == "-" {
		return nil
	}
	sum := md5.Sum(data)
	return os.WriteFile(filepath.Join(dir, name+ext), []byte(base64.StdEncoding.EncodeToString(sum[:])), 0o644)
}

// Gzip compresses s.
func Gzip(s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	_, _ = w.Write([]byte(s))
	_ = w.Close()
	return b.Bytes()
}

// Item is a DYNAMODB_JSON full-export line holding attrs (DynamoDB JSON
// attribute map text without the outer braces).
func Item(attrs string) string { return `{"Item":{` + attrs + `}}` }
