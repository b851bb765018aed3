// Package export reads DynamoDB ExportTableToPointInTime exports, from S3
// or from a directory: the manifests (with their checksums), the data
// files (gzip, MD5-checked) and their lines, streamed with bounded memory.
//
// An export folder holds
//
//	manifest-summary.json            the export: time, format, type, item count
//	manifest-summary.md5|.checksum   base64(MD5(manifest-summary.json))
//	manifest-files.json              one JSON line per data file: dataFileS3Key,
//	                                 itemCount, md5Checksum (base64 MD5 of the .gz)
//	manifest-files.md5|.checksum     base64(MD5(manifest-files.json))
//	data/<id>.json.gz | .ion.gz      the items, one per line
//
// Real exports name the checksum files *.md5 although the documentation
// says *.checksum; both are read. A data file's S3 key is mapped to a path
// in the folder by stripping the folder's own key (the directory of
// manifestFilesS3Key), so an export copied to another bucket, prefix or
// disk still resolves.
package export

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// Sentinel errors; use errors.Is.
var (
	// ErrNotExist reports a missing export folder or object.
	ErrNotExist = errors.New("export: not found")
	// ErrBadURI reports a source URI or object name that cannot be used.
	ErrBadURI = errors.New("export: bad source URI")
	// ErrManifest reports a manifest that cannot be parsed or used.
	ErrManifest = errors.New("export: invalid manifest")
	// ErrChecksum reports bytes whose MD5 differs from the manifest's.
	ErrChecksum = errors.New("export: checksum mismatch")
	// ErrRetried reports a call the store already retried before giving
	// up (S3: the SDK's standard retryer, awsconf.SDKRetries), which its
	// callers must not retry again; use errors.Is.
	ErrRetried = errors.New("export: store call failed after its retries")
)

// retriedError marks err as ErrRetried without changing its message.
type retriedError struct{ err error }

func (e retriedError) Error() string        { return e.err.Error() }
func (e retriedError) Unwrap() error        { return e.err }
func (e retriedError) Is(target error) bool { return target == ErrRetried }

// The manifest object names.
const (
	SummaryName = "manifest-summary.json"
	FilesName   = "manifest-files.json"
)

// maxManifestBytes bounds a manifest read into memory: a manifest-files.json
// line is ~250 bytes, so this allows millions of data files.
const maxManifestBytes = 1 << 30

// Export types (manifest-summary.json exportType).
const (
	TypeFull        = "FULL_EXPORT"
	TypeIncremental = "INCREMENTAL_EXPORT"
)

// Summary is manifest-summary.json.
type Summary struct {
	Version            string  `json:"version"`
	ExportARN          string  `json:"exportArn"`
	StartTime          string  `json:"startTime"`
	EndTime            string  `json:"endTime"`
	TableARN           string  `json:"tableArn"`
	TableID            string  `json:"tableId"`
	ExportTime         string  `json:"exportTime"`
	ExportFromTime     string  `json:"exportFromTime"`
	ExportToTime       string  `json:"exportToTime"`
	S3Bucket           string  `json:"s3Bucket"`
	S3Prefix           *string `json:"s3Prefix"`
	ManifestFilesS3Key string  `json:"manifestFilesS3Key"`
	BilledSizeBytes    int64   `json:"billedSizeBytes"`
	ItemCount          int64   `json:"itemCount"`
	OutputFormat       string  `json:"outputFormat"`
	OutputView         string  `json:"outputView"`
	ExportType         string  `json:"exportType"`
	// ManifestFilesMD5 is base64(MD5(manifest-files.json)) where the
	// summary carries it.
	ManifestFilesMD5 string `json:"manifestFilesMd5Checksum"`
}

// File is one line of manifest-files.json: a data file.
type File struct {
	// Index is the file's 0-based line number in manifest-files.json; jobs
	// name their checkpoints by it.
	Index int `json:"-"`
	// Name is the file's path in the export folder (data/abc.json.gz).
	Name string `json:"-"`
	// ItemCount is the number of items the manifest says the file holds;
	// HasItemCount is false when the manifest line has no itemCount.
	ItemCount    int64  `json:"-"`
	HasItemCount bool   `json:"-"`
	RawItemCount *int64 `json:"itemCount"`
	// MD5 is base64(MD5(the gzip object)); "" when the manifest has none.
	MD5         string `json:"md5Checksum"`
	DataFileMD5 string `json:"dataFileMd5Checksum"`
	ETag        string `json:"etag"`
	S3Key       string `json:"dataFileS3Key"`
}

// Export is a loaded export: its summary and data files.
type Export struct {
	Store   Store
	Summary Summary
	Files   []File
	// Format is the data format (DYNAMODB_JSON or ION).
	Format ddb.ExportFormat
	// Incremental is set for INCREMENTAL_EXPORT exports.
	Incremental bool
	// ExportTime is the point in time a full export is a snapshot of; zero
	// for incremental exports.
	ExportTime time.Time
	// Checksums lists the manifests whose checksum file was found and
	// matched; a manifest without a checksum file is read unchecked.
	Checksums []string
}

// ItemCount is the sum of the files' item counts.
func (e *Export) ItemCount() int64 {
	var n int64
	for _, f := range e.Files {
		n += f.ItemCount
	}
	return n
}

// Load reads and checks the manifests of the export in store. format, when
// not empty, overrides the summary's outputFormat.
//
// A manifest whose checksum file disagrees with it is an error wrapping
// ErrChecksum: without a trusted inventory no data file can be trusted
// either.
func Load(ctx context.Context, store Store, format ddb.ExportFormat) (*Export, error) {
	e := &Export{Store: store}
	sum, err := readAll(ctx, store, SummaryName)
	if err != nil {
		return nil, err
	}
	if ok, err := checkManifest(ctx, store, SummaryName, sum, ""); err != nil {
		return nil, err
	} else if ok {
		e.Checksums = append(e.Checksums, SummaryName)
	}
	if err := json.Unmarshal(sum, &e.Summary); err != nil {
		return nil, fmt.Errorf("%w: %s/%s: %v", ErrManifest, store, SummaryName, err)
	}
	s := &e.Summary
	switch s.ExportType {
	case "", TypeFull:
	case TypeIncremental:
		e.Incremental = true
	default:
		return nil, fmt.Errorf("%w: %s: exportType %q: want %s or %s", ErrManifest, SummaryName, s.ExportType, TypeFull, TypeIncremental)
	}
	e.Format = format
	if e.Format == "" {
		e.Format = ddb.ExportFormat(s.OutputFormat)
		if e.Format == "" {
			e.Format = ddb.ExportDynamoDBJSON
		}
	}
	if e.Format != ddb.ExportDynamoDBJSON && e.Format != ddb.ExportIon {
		return nil, fmt.Errorf("%w: %s: outputFormat %q: want DYNAMODB_JSON or ION", ErrManifest, SummaryName, e.Format)
	}
	if !e.Incremental {
		if s.ExportTime == "" {
			return nil, fmt.Errorf("%w: %s has no exportTime; a full export's items are versioned by it", ErrManifest, SummaryName)
		}
		if e.ExportTime, err = time.Parse(time.RFC3339Nano, s.ExportTime); err != nil {
			return nil, fmt.Errorf("%w: %s: exportTime %q: %v", ErrManifest, SummaryName, s.ExportTime, err)
		}
	}

	files, err := readAll(ctx, store, FilesName)
	if err != nil {
		return nil, err
	}
	if ok, err := checkManifest(ctx, store, FilesName, files, s.ManifestFilesMD5); err != nil {
		return nil, err
	} else if ok {
		e.Checksums = append(e.Checksums, FilesName)
	}
	root := ""
	if s.ManifestFilesS3Key != "" {
		root = path.Dir(s.ManifestFilesS3Key) + "/"
	}
	sc := bufio.NewScanner(bytes.NewReader(files))
	sc.Buffer(nil, 1<<20)
	seen := map[string]int{}
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		f := File{Index: len(e.Files)}
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("%w: %s line %d: %v", ErrManifest, FilesName, line, err)
		}
		if f.MD5 == "" {
			f.MD5 = f.DataFileMD5
		}
		if f.RawItemCount != nil {
			f.ItemCount, f.HasItemCount = *f.RawItemCount, true
		}
		if f.Name, err = dataPath(root, f.S3Key); err != nil {
			return nil, fmt.Errorf("%w: %s line %d: %v", ErrManifest, FilesName, line, err)
		}
		if f.ItemCount < 0 {
			return nil, fmt.Errorf("%w: %s line %d: negative itemCount", ErrManifest, FilesName, line)
		}
		if prev, dup := seen[f.Name]; dup {
			return nil, fmt.Errorf("%w: %s line %d: %s already listed on line %d", ErrManifest, FilesName, line, f.Name, prev)
		}
		seen[f.Name] = line
		e.Files = append(e.Files, f)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrManifest, FilesName, err)
	}
	return e, nil
}

// dataPath maps a dataFileS3Key to a path in the export folder.
func dataPath(root, key string) (string, error) {
	if key == "" {
		return "", errors.New("no dataFileS3Key")
	}
	rel := ""
	if root != "" && strings.HasPrefix(key, root) {
		rel = key[len(root):]
	} else if i := strings.LastIndex(key, "/data/"); i >= 0 {
		rel = key[i+1:]
	} else if strings.HasPrefix(key, "data/") {
		rel = key
	} else {
		return "", fmt.Errorf("dataFileS3Key %q is neither below %q nor in a data/ folder", key, root)
	}
	if !fs.ValidPath(rel) {
		return "", fmt.Errorf("dataFileS3Key %q: %q is not a path inside the export folder", key, rel)
	}
	return rel, nil
}

func readAll(ctx context.Context, store Store, name string) ([]byte, error) {
	obj, err := store.Open(ctx, name, "")
	if err != nil {
		return nil, err
	}
	defer obj.Body.Close()
	b, err := io.ReadAll(io.LimitReader(obj.Body, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("export: read %s/%s: %w", store, name, err)
	}
	if len(b) > maxManifestBytes {
		return nil, fmt.Errorf("%w: %s/%s is larger than %d bytes", ErrManifest, store, name, maxManifestBytes)
	}
	return b, nil
}

// checkManifest checks data against the manifest's .md5 or .checksum file
// (and against want, a checksum from elsewhere, when set). It reports
// whether a checksum was found.
func checkManifest(ctx context.Context, store Store, name string, data []byte, want string) (bool, error) {
	got := md5.Sum(data)
	base := strings.TrimSuffix(name, ".json")
	found := false
	check := func(from, sum string) error {
		sum = strings.TrimSpace(sum)
		ok, err := md5Equal(sum, got[:])
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrManifest, from, err)
		}
		if !ok {
			return fmt.Errorf("%w: %s/%s has MD5 %s, %s says %s; the export is damaged or incomplete",
				ErrChecksum, store, name, base64.StdEncoding.EncodeToString(got[:]), from, sum)
		}
		found = true
		return nil
	}
	if want != "" {
		if err := check(SummaryName+" manifestFilesMd5Checksum", want); err != nil {
			return false, err
		}
	}
	for _, ext := range []string{".md5", ".checksum"} {
		b, err := readAll(ctx, store, base+ext)
		if errors.Is(err, ErrNotExist) {
			continue
		}
		if err != nil {
			return false, err
		}
		if err := check(base+ext, string(b)); err != nil {
			return false, err
		}
	}
	return found, nil
}

// md5Equal compares a checksum written as base64 (DynamoDB's form) or hex
// with sum.
func md5Equal(text string, sum []byte) (bool, error) {
	if b, err := base64.StdEncoding.DecodeString(text); err == nil && len(b) == md5.Size {
		return bytes.Equal(b, sum), nil
	}
	if b, err := hex.DecodeString(text); err == nil && len(b) == md5.Size {
		return bytes.Equal(b, sum), nil
	}
	return false, fmt.Errorf("checksum %q is neither base64 nor hex of 16 bytes", text)
}

// CheckMD5 streams data file f and compares its MD5 with the manifest's. It
// returns the object's ETag (to pin the next read of the same object), and
// an error wrapping ErrChecksum on a mismatch. A file the manifest gives no
// checksum for passes.
func (e *Export) CheckMD5(ctx context.Context, f File) (etag string, err error) {
	obj, err := e.Store.Open(ctx, f.Name, "")
	if err != nil {
		return "", err
	}
	defer obj.Body.Close()
	h := md5.New()
	n, err := io.Copy(h, obj.Body)
	if err != nil {
		return "", fmt.Errorf("export: read %s/%s: %w", e.Store, f.Name, err)
	}
	if f.MD5 == "" {
		return obj.ETag, nil
	}
	ok, err := md5Equal(strings.TrimSpace(f.MD5), h.Sum(nil))
	if err != nil {
		return "", fmt.Errorf("%w: %s: md5Checksum of %s: %v", ErrChecksum, FilesName, f.Name, err)
	}
	if !ok {
		return "", fmt.Errorf("%w: %s (%d bytes) has MD5 %s, manifest says %s", ErrChecksum, f.Name, n,
			base64.StdEncoding.EncodeToString(h.Sum(nil)), f.MD5)
	}
	return obj.ETag, nil
}
