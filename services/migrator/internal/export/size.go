package export

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// gzipTrailer is the length of what UncompressedSize reads of each file:
// a gzip member ends with CRC-32 then ISIZE, the uncompressed length mod
// 2^32, little-endian (RFC 1952, section 2.3.1).
const gzipTrailer = 4

// Tailer is a Store that reads the last bytes of an object without reading
// the rest. S3Store and DirStore are Tailers.
type Tailer interface {
	// Tail returns the last n bytes of object name and the object's size.
	Tail(ctx context.Context, name string, n int64) ([]byte, int64, error)
}

// UncompressedSize estimates the uncompressed bytes of the export's data
// files (what a job's bytes_read counts) from each file's gzip trailer,
// reading 4 bytes per file, up to parallel files at once. The manifests
// carry no such size. It is an estimate for progress and ETAs, never
// trusted for correctness: ISIZE is the size of a file's last gzip member
// only, modulo 4 GiB. ok is false (size unknown) when the store cannot
// read object tails, a file cannot be read, or a trailer is implausible
// (smaller than the compressed file, as a wrapped or damaged one is).
func (e *Export) UncompressedSize(ctx context.Context, parallel int) (total int64, ok bool, err error) {
	t, isTailer := e.Store.(Tailer)
	if !isTailer || len(e.Files) == 0 {
		return 0, false, nil
	}
	parallel = max(1, parallel)
	var (
		mu      sync.Mutex
		sum     int64
		unknown bool
		first   error
		wg      sync.WaitGroup
		sem     = make(chan struct{}, parallel)
	)
	for _, f := range e.Files {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return 0, false, ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			tail, size, err := t.Tail(ctx, f.Name, gzipTrailer)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				if first == nil {
					first = fmt.Errorf("export: size of %s: %w", f.Name, err)
				}
				unknown = true
			case len(tail) != gzipTrailer:
				unknown = true
			default:
				n := int64(binary.LittleEndian.Uint32(tail))
				// Deflate expands incompressible data by a few bytes per
				// 16 KiB block, plus 18 bytes of gzip framing: a file
				// larger than that has a wrapped (4 GiB or more) or
				// damaged trailer.
				if size > 0 && n+n/1000+64 < size {
					unknown = true
				}
				sum += n
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return 0, false, ctx.Err()
	}
	if unknown {
		return 0, false, first
	}
	return sum, true, nil
}

// Tail implements Tailer.
func (d *DirStore) Tail(_ context.Context, name string, n int64) ([]byte, int64, error) {
	if !fs.ValidPath(name) {
		return nil, 0, fmt.Errorf("%w: %q is not a path inside the export folder", ErrBadURI, name)
	}
	f, err := d.root.Open(filepath.FromSlash(name))
	if err != nil {
		return nil, 0, fmt.Errorf("export: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("export: %w", err)
	}
	size := st.Size()
	n = min(n, size)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, size-n); err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, fmt.Errorf("export: read the end of %s: %w", name, err)
	}
	return buf, size, nil
}

// Tail implements Tailer with a suffix Range request.
func (s *S3Store) Tail(ctx context.Context, name string, n int64) ([]byte, int64, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + name), Range: aws.String("bytes=-" + strconv.FormatInt(n, 10)),
	})
	if err != nil {
		return nil, 0, fmt.Errorf("export: get the end of s3://%s/%s%s: %w", s.bucket, s.prefix, name, err)
	}
	defer out.Body.Close()
	buf, err := io.ReadAll(io.LimitReader(out.Body, n))
	if err != nil {
		return nil, 0, fmt.Errorf("export: read the end of s3://%s/%s%s: %w", s.bucket, s.prefix, name, err)
	}
	size := int64(-1)
	// Content-Range: bytes 96-99/100
	if cr := aws.ToString(out.ContentRange); cr != "" {
		if _, total, ok := strings.Cut(cr, "/"); ok {
			if v, err := strconv.ParseInt(total, 10, 64); err == nil {
				size = v
			}
		}
	}
	return buf, size, nil
}
