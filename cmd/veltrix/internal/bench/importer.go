package bench

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/veltrixdb/veltrix/pkg/client"
	"github.com/veltrixdb/veltrix/pkg/ddb"
	"github.com/veltrixdb/veltrix/pkg/hlc"
)

// Attribute names of the generated export's items.
const (
	exportKeyAttr  = "pk"
	exportDataAttr = "payload"
)

// exportTime is the generated export's point in time; every imported item
// carries the version derived from it, as the migrator does.
var exportTime = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// Export is a generated export on disk: gzip-compressed DYNAMODB_JSON data
// files, one item a line, as ExportTableToPointInTime writes them.
type Export struct {
	Dir   string
	Files []string
	Items int
	// ItemBytes is the size of one item's canonical encoding (the stored
	// value), CompressedBytes the data files' size.
	ItemBytes       int
	CompressedBytes int64
}

// exportItem is item i of the generated export.
func exportItem(i int, data []byte) ddb.Item {
	return ddb.Item{
		exportKeyAttr:  ddb.S(fmt.Sprintf("item#%010d", i)),
		exportDataAttr: ddb.B(data),
	}
}

// payloadLen returns the payload size that makes an item's canonical
// encoding itemBytes long.
func payloadLen(itemBytes int) int {
	n := max(itemBytes-40, 1)
	for range 64 {
		got := len(ddb.EncodeItem(exportItem(0, make([]byte, n))))
		if got == itemBytes || n <= 1 && got > itemBytes {
			return n
		}
		n = max(n+itemBytes-got, 1)
	}
	return n
}

// GenerateExport writes items items of itemBytes bytes each into files
// data files under dir.
func GenerateExport(dir string, items, itemBytes, files int, seed uint64) (*Export, error) {
	files = max(1, min(files, items))
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	plen := payloadLen(itemBytes)
	e := &Export{Dir: dir, Items: items, ItemBytes: len(ddb.EncodeItem(exportItem(0, make([]byte, plen))))}
	e.Files = make([]string, files)
	sizes := make([]int64, files)
	errs := make([]error, files)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for f := range files {
		e.Files[f] = filepath.Join(data, fmt.Sprintf("part-%04d.json.gz", f))
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			sizes[f], errs[f] = writeExportFile(e.Files[f], f, files, items, plen, seed)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, s := range sizes {
		e.CompressedBytes += s
	}
	return e, e.writeManifests()
}

// writeExportFile writes items f, f+files, f+2·files, … to path.
func writeExportFile(path string, f, files, items, plen int, seed uint64) (int64, error) {
	out, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	zw, err := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	if err != nil {
		return 0, errors.Join(err, out.Close())
	}
	r := newRand(seed + uint64(f))
	payload := make([]byte, plen)
	b64 := make([]byte, base64.StdEncoding.EncodedLen(plen))
	var line []byte
	for i := f; i < items; i += files {
		for j := range payload {
			payload[j] = byte(r.Uint32())
		}
		base64.StdEncoding.Encode(b64, payload)
		line = append(line[:0], `{"Item":{"`+exportKeyAttr+`":{"S":"item#`...)
		line = append(line, fmt.Sprintf("%010d", i)...)
		line = append(line, `"},"`+exportDataAttr+`":{"B":"`...)
		line = append(line, b64...)
		line = append(line, "\"}}}\n"...)
		if _, err := zw.Write(line); err != nil {
			return 0, errors.Join(err, out.Close())
		}
	}
	if err := errors.Join(zw.Close(), bw.Flush()); err != nil {
		return 0, errors.Join(err, out.Close())
	}
	st, err := out.Stat()
	if err != nil {
		return 0, errors.Join(err, out.Close())
	}
	return st.Size(), out.Close()
}

// Writer is where an import sends its batches: pkg/client's BatchWrite.
type Writer interface {
	BatchWrite(ctx context.Context, muts []client.Mutation, opts ...client.CallOption) ([]uint64, error)
}

// ImportOptions configure Import.
type ImportOptions struct {
	// Table is the target table.
	Table string
	// Workers is the number of BatchWrite calls in flight. Default 8.
	Workers int
	// Batch is the mutations per BatchWrite. Default 500.
	Batch int
}

// ImportResult is what an import measured.
type ImportResult struct {
	Items   int64
	Bytes   int64 // stored value bytes
	Elapsed time.Duration
}

// ItemsPerSec is the import's throughput in items.
func (r ImportResult) ItemsPerSec() float64 { return perSec(uint64(r.Items), r.Elapsed) }

// MBPerSec is the import's throughput in MB (10^6 bytes) of stored values.
func (r ImportResult) MBPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Bytes) / 1e6 / r.Elapsed.Seconds()
}

// Import reads the export's data files in parallel (one reader per file,
// decoding lines with pkg/ddb and encoding items canonically, as the
// migrator does), and writes them through w in batches from Workers
// writers, each mutation carrying the export's version. A nil w only
// decodes (to measure the reading side alone).
func Import(ctx context.Context, e *Export, w Writer, o ImportOptions) (ImportResult, error) {
	o.EnsureDefaults()
	version := hlc.FromTime(exportTime, 0)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	batches := make(chan []client.Mutation, o.Workers*2)
	var items, bytes atomic.Int64
	start := time.Now()

	var readers sync.WaitGroup
	sem := make(chan struct{}, max(o.Workers, 2))
	for _, f := range e.Files {
		readers.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := readExportFile(ctx, f, o.Table, version, o.Batch, batches); err != nil {
				cancel(err)
			}
		})
	}
	go func() { readers.Wait(); close(batches) }()

	var writers sync.WaitGroup
	for range o.Workers {
		writers.Go(func() {
			for b := range batches {
				if ctx.Err() != nil {
					continue // drain
				}
				if w != nil {
					if _, err := w.BatchWrite(ctx, b); err != nil {
						cancel(fmt.Errorf("bench: import batch write: %w", err))
						continue
					}
				}
				n := int64(0)
				for _, m := range b {
					n += int64(len(m.Value))
				}
				items.Add(int64(len(b)))
				bytes.Add(n)
			}
		})
	}
	writers.Wait()
	res := ImportResult{Items: items.Load(), Bytes: bytes.Load(), Elapsed: time.Since(start)}
	if err := context.Cause(ctx); err != nil {
		return res, err
	}
	if res.Items != int64(e.Items) {
		return res, fmt.Errorf("bench: import wrote %d items of %d", res.Items, e.Items)
	}
	return res, nil
}

func readExportFile(ctx context.Context, path, table string, version uint64, batch int, out chan<- []client.Mutation) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	muts := make([]client.Mutation, 0, batch)
	line := 0
	for sc.Scan() {
		line++
		rec, err := ddb.DecodeJSONExportLine(sc.Bytes())
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
		pk, ok := rec.Item[exportKeyAttr].(ddb.S)
		if !ok {
			return fmt.Errorf("%s:%d: no %s attribute of type S", path, line, exportKeyAttr)
		}
		muts = append(muts, client.Mutation{
			Key:     client.Key{Table: table, PartitionKey: []byte(pk)},
			Value:   ddb.EncodeItem(rec.Item),
			Version: version,
		})
		if len(muts) == batch {
			select {
			case out <- muts:
			case <-ctx.Done():
				return nil
			}
			muts = make([]client.Mutation, 0, batch)
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(muts) > 0 {
		select {
		case out <- muts:
		case <-ctx.Done():
		}
	}
	return nil
}
