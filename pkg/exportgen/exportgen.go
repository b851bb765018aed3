// Package exportgen writes realistic DynamoDB ExportTableToPointInTime
// exports for tests, benchmarks and the dev stack's sample: the layout,
// manifests and checksum files of a real export (see
// shared/testdata/dynamodb/export-full-real), data files of gzip-compressed
// DynamoDB JSON or Amazon Ion lines, full or incremental, holding
// sessions-like items with composite keys, every DynamoDB type and TTL
// attributes. Items are a pure function of the options and their index, so
// a test can rebuild the item any line holds (Options.Item).
//
// The helpers after Generate damage an export the ways real ones get
// damaged (truncated data files, wrong checksums, wrong item counts),
// keeping the manifests' own checksums consistent so that only the damage
// intended is detected.
package exportgen

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// Format is the kind of export written.
type Format string

// The export kinds.
const (
	// DynamoDBJSON is a full export in DYNAMODB_JSON.
	DynamoDBJSON Format = "DYNAMODB_JSON"
	// Ion is a full export in ION.
	Ion Format = "ION"
	// Incremental is an incremental export (DYNAMODB_JSON): puts with
	// NewImage and OldImage, deletes with Keys and OldImage only.
	Incremental Format = "INCREMENTAL"
	// IncrementalIon is an incremental export in ION.
	IncrementalIon Format = "INCREMENTAL_ION"
)

// Attribute names of the generated items.
const (
	PartitionKey = "user_id"    // S: user#000042
	SortKey      = "session_id" // S: session#0001#<hex>
	TTLAttribute = "expires_at" // N: Unix epoch seconds
)

// Options shape an export. Zero values take the defaults.
type Options struct {
	// Items is the number of data lines (items, or records of an
	// incremental export). Default 1000.
	Items int
	// Files is the number of data files. Default 4.
	Files int
	// Format is the export kind. Default DynamoDBJSON.
	Format Format
	// Seed makes the items; the same options give the same export.
	Seed uint64
	// WithTTL gives most items an expires_at attribute: 1 in 20 already
	// expired (1 to 30 days before Now), the rest 1 to 30 days after.
	WithTTL bool
	// Now is the reference time of the TTLs. Default time.Now().
	Now time.Time
	// ExportTime is the export's point in time (full exports) or the end
	// of its window (incremental). Default 2024-06-01T12:00:00Z.
	ExportTime time.Time
	// Table names the source table in the ARNs. Default "sessions".
	Table string
	// PadBytes is the length of each item's padding string. Default 200.
	PadBytes int
	// DeleteEvery makes every n-th record of an incremental export a
	// delete. Default 10.
	DeleteEvery int
	// Lines, when set, may replace the data line of item i (the n-th line
	// of file f, 1-based, before replacement): it returns the lines to
	// write instead (none drops the item). Bad-input tests use it.
	Lines func(file, line, item int, data []byte) [][]byte
	// Compression is the gzip level. Default gzip.BestSpeed.
	Compression int
	// Lean makes small items (~350 bytes of DynamoDB JSON instead of ~1
	// KB) that still hold every type, for tests that import many of them
	// under the race detector.
	Lean bool
}

func (o *Options) defaults() {
	if o.Items == 0 {
		o.Items = 1000
	}
	if o.Files == 0 {
		o.Files = 4
	}
	if o.Format == "" {
		o.Format = DynamoDBJSON
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.ExportTime.IsZero() {
		o.ExportTime = time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	}
	if o.Table == "" {
		o.Table = "sessions"
	}
	if o.PadBytes == 0 {
		o.PadBytes = 200
	}
	if o.DeleteEvery == 0 {
		o.DeleteEvery = 10
	}
	if o.Compression == 0 {
		o.Compression = gzip.BestSpeed
	}
}

// File is a data file written.
type File struct {
	// Name is the path in the export folder (data/<id>.json.gz).
	Name string
	// Lines is the number of data lines written; the manifest's itemCount.
	Lines int
	// Items are the indexes of the items written, in line order (lines
	// added by Options.Lines are not items).
	Items []int
	// MD5 is base64(MD5(gzip bytes)).
	MD5 string
}

// Export describes a generated export.
type Export struct {
	// Dir is the export folder.
	Dir string
	// Options are the options it was generated with, defaults filled in.
	Options Options
	// Files are its data files.
	Files []File
	// Lines is the number of data lines, Live the items that should be in
	// Veltrix after importing it (not expired, not deleted), Expired those
	// skipped for their TTL and Deletes the delete records.
	Lines, Live, Expired, Deletes int
	// Bytes is the uncompressed size of the data lines.
	Bytes int64
}

// Incremental reports whether the export is incremental.
func (o Options) Incremental() bool { return o.Format == Incremental || o.Format == IncrementalIon }

func (o Options) ion() bool { return o.Format == Ion || o.Format == IncrementalIon }

// Generate writes an export into dir (created if needed).
func Generate(dir string, o Options) (*Export, error) {
	o.defaults()
	if o.Files < 1 || o.Items < 0 {
		return nil, errors.New("exportgen: need at least one file and no negative item count")
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, err
	}
	e := &Export{Dir: dir, Options: o}
	r := rand.New(rand.NewPCG(o.Seed, 0x9e3779b97f4a7c15))
	ext := ".json.gz"
	if o.ion() {
		ext = ".ion.gz"
	}
	exportID := fmt.Sprintf("%014d-%08x", o.ExportTime.UnixMilli(), r.Uint32())
	// Files are written in parallel; each counts into its own Export.
	parts := make([]*Export, o.Files)
	errs := make([]error, o.Files)
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for f := 0; f < o.Files; f++ {
		var id [16]byte
		binary.LittleEndian.PutUint64(id[:], r.Uint64())
		binary.LittleEndian.PutUint64(id[8:], r.Uint64())
		name := "data/" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(id[:]))[:26] + ext
		lo, hi := f*o.Items/o.Files, (f+1)*o.Items/o.Files
		parts[f] = &Export{Dir: dir, Options: o}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			file, err := parts[f].writeFile(name, f, lo, hi)
			parts[f].Files = []File{file}
			errs[f] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, p := range parts {
		e.Files = append(e.Files, p.Files...)
		e.Lines += p.Lines
		e.Live += p.Live
		e.Expired += p.Expired
		e.Deletes += p.Deletes
		e.Bytes += p.Bytes
	}
	if err := e.writeManifests(exportID); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *Export) writeFile(name string, f, lo, hi int) (File, error) {
	o := e.Options
	var raw bytes.Buffer
	file := File{Name: name}
	for i := lo; i < hi; i++ {
		line := o.Line(i)
		lines := [][]byte{line}
		if o.Lines != nil {
			lines = o.Lines(f, i-lo+1, i, line)
		}
		for _, l := range lines {
			raw.Write(l)
			raw.WriteByte('\n')
			file.Lines++
			e.Bytes += int64(len(l) + 1)
			if bytes.Equal(l, line) {
				file.Items = append(file.Items, i)
				switch kind := o.Kind(i); kind {
				case KindLive:
					e.Live++
				case KindExpired:
					e.Expired++
				case KindDelete:
					e.Deletes++
				}
			}
		}
	}
	e.Lines += file.Lines
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, o.Compression)
	if err != nil {
		return file, err
	}
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return file, err
	}
	if err := zw.Close(); err != nil {
		return file, err
	}
	sum := md5.Sum(gz.Bytes())
	file.MD5 = base64.StdEncoding.EncodeToString(sum[:])
	return file, os.WriteFile(filepath.Join(e.Dir, filepath.FromSlash(name)), gz.Bytes(), 0o644)
}

// manifestFile is a manifest-files.json line.
type manifestFile struct {
	ItemCount     int    `json:"itemCount"`
	MD5Checksum   string `json:"md5Checksum"`
	ETag          string `json:"etag"`
	DataFileS3Key string `json:"dataFileS3Key"`
}

func (e *Export) writeManifests(exportID string) error {
	o := e.Options
	root := "AWSDynamoDB/" + exportID + "/"
	var files bytes.Buffer
	for _, f := range e.Files {
		sum, _ := base64.StdEncoding.DecodeString(f.MD5)
		b, err := json.Marshal(manifestFile{ItemCount: f.Lines, MD5Checksum: f.MD5, ETag: hex.EncodeToString(sum) + "-1", DataFileS3Key: root + f.Name})
		if err != nil {
			return err
		}
		files.Write(b)
		files.WriteByte('\n')
	}
	if err := writeWithMD5(e.Dir, "manifest-files", files.Bytes()); err != nil {
		return err
	}
	const ts = "2006-01-02T15:04:05.000Z"
	arn := "arn:aws:dynamodb:us-east-1:123456789012:table/" + o.Table
	format := "DYNAMODB_JSON"
	if o.ion() {
		format = "ION"
	}
	sum := []string{
		`"version":"2020-06-30"`,
		`"exportArn":` + strconv.Quote(arn+"/export/"+exportID),
		`"startTime":` + strconv.Quote(o.ExportTime.UTC().Format(ts)),
		`"endTime":` + strconv.Quote(o.ExportTime.Add(4*time.Minute).UTC().Format(ts)),
		`"tableArn":` + strconv.Quote(arn),
		`"tableId":"00000000-0000-4000-8000-000000000000"`,
	}
	if o.Incremental() {
		sum[0] = `"version":"2023-08-01"`
		sum = append(sum,
			`"exportFromTime":`+strconv.Quote(o.ExportTime.Add(-time.Hour).UTC().Format(ts)),
			`"exportToTime":`+strconv.Quote(o.ExportTime.UTC().Format(ts)))
	} else {
		sum = append(sum, `"exportTime":`+strconv.Quote(o.ExportTime.UTC().Format(ts)))
	}
	sum = append(sum,
		`"s3Bucket":"veltrix-test-exports"`, `"s3Prefix":null`, `"s3SseAlgorithm":"AES256"`, `"s3SseKmsKeyId":null`,
		`"manifestFilesS3Key":`+strconv.Quote(root+"manifest-files.json"),
		`"billedSizeBytes":0`,
		fmt.Sprintf(`"itemCount":%d`, e.Lines),
		`"outputFormat":`+strconv.Quote(format))
	if o.Incremental() {
		sum = append(sum, `"outputView":"NEW_AND_OLD_IMAGES"`, `"exportType":"INCREMENTAL_EXPORT"`)
	}
	// Like a real summary: one line, no trailing newline.
	return writeWithMD5(e.Dir, "manifest-summary", []byte("{"+strings.Join(sum, ",")+"}"))
}

// writeWithMD5 writes name.json and name.md5 (base64 MD5, no newline, as
// real exports do).
func writeWithMD5(dir, name string, data []byte) error {
	if err := os.WriteFile(filepath.Join(dir, name+".json"), data, 0o644); err != nil {
		return err
	}
	sum := md5.Sum(data)
	return os.WriteFile(filepath.Join(dir, name+".md5"), []byte(base64.StdEncoding.EncodeToString(sum[:])), 0o644)
}

// Kind is what a record does to Veltrix when imported.
type Kind int

// The record kinds.
const (
	// KindLive is an item that ends up in Veltrix.
	KindLive Kind = iota
	// KindExpired is an item whose TTL had passed: skipped.
	KindExpired
	// KindDelete is an incremental delete record.
	KindDelete
)

func (o Options) rng(i int) *rand.Rand {
	return rand.New(rand.NewPCG(o.Seed^0x5eed, uint64(i)))
}

// Kind says what record i does.
func (o Options) Kind(i int) Kind {
	o.defaults()
	if o.Incremental() && i%o.DeleteEvery == o.DeleteEvery-1 {
		return KindDelete
	}
	if o.WithTTL && o.ttlState(i) == ttlExpired {
		return KindExpired
	}
	return KindLive
}

type ttlKind int

const (
	ttlNone ttlKind = iota
	ttlExpired
	ttlFuture
)

func (o Options) ttlState(i int) ttlKind {
	switch h := (uint64(i)*0x9e3779b97f4a7c15 ^ o.Seed) % 20; {
	case h == 0:
		return ttlExpired
	case h < 4:
		return ttlNone
	}
	return ttlFuture
}

// Key returns the partition and sort key of item i: users have up to four
// sessions each.
func (o Options) Key(i int) (pk, sk string) {
	return fmt.Sprintf("user#%06d", i/4), fmt.Sprintf("session#%04d#%08x", i%4, uint32(uint64(i)*2654435761^o.Seed))
}

var (
	devices  = []string{"ios", "android", "web", "macos", "windows", "linux"}
	cities   = []string{"Paris", "São Paulo", "Zürich", "東京", "Reykjavík", "Kraków", "New York", "Cape Town"}
	features = []string{"beta", "dark-mode", "2fa", "sso", "pro", "trial", "legacy"}
)

// Item returns item i: a session with composite keys and every DynamoDB
// type (S, N with integers, decimals, 38-digit and extreme values, B,
// BOOL, NULL, M, L, SS, NS, BS, nested maps and lists), and with WithTTL
// an expires_at on most items.
func (o Options) Item(i int) ddb.Item {
	o.defaults()
	r := o.rng(i)
	pk, sk := o.Key(i)
	created := o.ExportTime.Add(-time.Duration(r.IntN(90*24*3600)) * time.Second)
	token := make([]byte, 16+r.IntN(16))
	for j := range token {
		token[j] = byte(r.Uint32())
	}
	if o.Lean {
		return o.leanItem(i, r, pk, sk, created)
	}
	it := ddb.Item{
		PartitionKey:   ddb.S(pk),
		SortKey:        ddb.S(sk),
		"created_at":   ddb.NFromInt64(created.Unix()),
		"last_seen_ms": ddb.NFromInt64(created.UnixMilli() + int64(r.IntN(1e9))),
		"score":        ddb.MustN(fmt.Sprintf("%d.%03d", r.IntN(100000)-50000, r.IntN(1000))),
		"balance":      ddb.MustN(fmt.Sprintf("%d%017d.%019d", 1+r.IntN(9), r.Uint64()%1e17, r.Uint64()%1e19)), // 37-38 significant digits
		"ratio":        ddb.MustN(fmt.Sprintf("%dE-%d", 1+r.IntN(99), 1+r.IntN(20))),
		"active":       ddb.Bool(r.IntN(2) == 0),
		"token":        ddb.B(token),
		"city":         ddb.S(cities[r.IntN(len(cities))]),
		"device": ddb.M{
			"os":      ddb.S(devices[r.IntN(len(devices))]),
			"version": ddb.MustN(fmt.Sprintf("%d.%d", 1+r.IntN(17), r.IntN(10))),
			"screen":  ddb.L{ddb.NFromInt64(int64(320 + r.IntN(3000))), ddb.NFromInt64(int64(480 + r.IntN(2000)))},
			"push":    ddb.M{"enabled": ddb.Bool(r.IntN(3) > 0), "token": ddb.Null{}},
		},
		"events": ddb.L{
			ddb.M{"type": ddb.S("login"), "at": ddb.NFromInt64(created.Unix())},
			ddb.M{"type": ddb.S("view"), "path": ddb.S(fmt.Sprintf("/items/%d?ref=\"x\"&q=é", r.IntN(1000))), "ok": ddb.Bool(true)},
			ddb.L{ddb.S("nested"), ddb.NFromInt64(int64(i)), ddb.Null{}},
		},
		"features": ddb.SS{features[i%len(features)], features[(i+1+r.IntN(3))%len(features)], "feature#" + strconv.Itoa(i%13)},
		"lucky":    ddb.NS{ddb.NFromInt64(int64(i % 7)), ddb.MustN("3.14159"), ddb.NFromInt64(-int64(r.IntN(1000)) - 10)},
		"keys":     ddb.BS{[]byte{byte(i), 1}, []byte{byte(i), 2, 0}, {}},
		"note":     ddb.S(pad(r, o.PadBytes)),
	}
	if i%5 == 0 {
		it["deleted_at"] = ddb.Null{}
	}
	if i%17 == 0 {
		it["empty"] = ddb.S("")
		it["empty_b"] = ddb.B{}
		it["empty_m"] = ddb.M{}
		it["empty_l"] = ddb.L{}
		it["huge"] = ddb.MustN("9.9999999999999999999999999999999999999E+125")
		it["tiny"] = ddb.MustN("-1E-130")
	}
	o.addTTL(it, i, r)
	return it
}

func (o Options) leanItem(i int, r *rand.Rand, pk, sk string, created time.Time) ddb.Item {
	it := ddb.Item{
		PartitionKey: ddb.S(pk),
		SortKey:      ddb.S(sk),
		"created_at": ddb.NFromInt64(created.Unix()),
		"score":      ddb.MustN(fmt.Sprintf("%d.%03d", r.IntN(100000)-50000, r.IntN(1000))),
		"active":     ddb.Bool(r.IntN(2) == 0),
		"token":      ddb.B{byte(i), byte(i >> 8), byte(r.Uint32()), 0},
		"device":     ddb.M{"os": ddb.S(devices[r.IntN(len(devices))]), "v": ddb.MustN(fmt.Sprintf("%d.%d", 1+r.IntN(17), r.IntN(10)))},
		"events":     ddb.L{ddb.S("login"), ddb.NFromInt64(int64(i)), ddb.Null{}, ddb.L{ddb.Bool(true)}},
		"tags":       ddb.SS{features[i%len(features)], "t" + strconv.Itoa(i%13)},
		"lucky":      ddb.NS{ddb.NFromInt64(int64(i % 7)), ddb.MustN("-3.5")},
		"keys":       ddb.BS{{byte(i)}, {}},
		"note":       ddb.S(pad(r, o.PadBytes)),
	}
	if i%5 == 0 {
		it["deleted_at"] = ddb.Null{}
	}
	if i%11 == 0 {
		it["balance"] = ddb.MustN(fmt.Sprintf("%d%017d.%019d", 1+r.IntN(9), r.Uint64()%1e17, r.Uint64()%1e19))
		it["city"] = ddb.S(cities[r.IntN(len(cities))])
	}
	o.addTTL(it, i, r)
	return it
}

func (o Options) addTTL(it ddb.Item, i int, r *rand.Rand) {
	if o.WithTTL {
		switch o.ttlState(i) {
		case ttlExpired:
			it[TTLAttribute] = ddb.NFromInt64(o.Now.Add(-time.Duration(1+r.IntN(30)) * 24 * time.Hour).Unix())
		case ttlFuture:
			it[TTLAttribute] = ddb.NFromInt64(o.Now.Add(time.Duration(1+r.IntN(30)) * 24 * time.Hour).Unix())
		}
	}
}

const padChars = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?-_/"

func pad(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for j := range b {
		b[j] = padChars[r.IntN(len(padChars))]
	}
	return string(b)
}

// WriteMicros is the WriteTimestampMicros of incremental record i: one
// microsecond apart, ending at the export time.
func (o Options) WriteMicros(i int) int64 {
	o.defaults()
	return o.ExportTime.UnixMicro() - int64(o.Items-i)
}

// Line returns data line i as written.
func (o Options) Line(i int) []byte {
	o.defaults()
	it := o.Item(i)
	if !o.Incremental() {
		if o.ion() {
			return []byte("$ion_1_0 {Item:" + IonItem(it) + "}")
		}
		return FullJSONLine(it)
	}
	pk, sk := o.Key(i)
	keys := ddb.Item{PartitionKey: ddb.S(pk), SortKey: ddb.S(sk)}
	old := o.Item(i)
	old["note"] = ddb.S("previous version")
	var newImage ddb.Item
	if o.Kind(i) != KindDelete {
		newImage = it
	}
	if o.ion() {
		var b strings.Builder
		fmt.Fprintf(&b, "$ion_1_0 {Metadata:{WriteTimestampMicros:%d},Keys:%s", o.WriteMicros(i), IonItem(keys))
		if newImage != nil {
			b.WriteString(",NewImage:" + IonItem(newImage))
		}
		b.WriteString(",OldImage:" + IonItem(old) + "}")
		return []byte(b.String())
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"Metadata":{"WriteTimestampMicros":{"N":"%d"}},"Keys":`, o.WriteMicros(i))
	b.Write(mustJSON(keys))
	if newImage != nil {
		b.WriteString(`,"NewImage":`)
		b.Write(mustJSON(newImage))
	}
	b.WriteString(`,"OldImage":`)
	b.Write(mustJSON(old))
	b.WriteString("}")
	return b.Bytes()
}

// FullJSONLine is the DYNAMODB_JSON full-export line of an item.
func FullJSONLine(it ddb.Item) []byte {
	return append(append([]byte(`{"Item":`), mustJSON(it)...), '}')
}

func mustJSON(it ddb.Item) []byte {
	b, err := ddb.MarshalDynamoDBJSON(it)
	if err != nil {
		panic(err)
	}
	return b
}
