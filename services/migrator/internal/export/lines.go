package export

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
)

// More sentinel errors of data files; use errors.Is.
var (
	// ErrCorrupt reports a data file whose gzip stream is damaged or
	// truncated. Nothing after the damage can be read.
	ErrCorrupt = errors.New("export: corrupt gzip stream")
	// ErrLineTooLong reports a line over the reader's limit; the line was
	// skipped and reading can go on.
	ErrLineTooLong = errors.New("export: line too long")
)

// DefaultMaxLine is the longest data line read: DynamoDB items are at most
// 400 KB, which even with base64 and type descriptors stays well below it.
const DefaultMaxLine = 1 << 20

// ExcerptBytes is how much of a bad line a reject keeps.
const ExcerptBytes = 1 << 10

// Lines reads the lines of one data file: the gzip stream decompressed and
// split on '\n'. Memory is bounded by the longest line allowed.
type Lines struct {
	obj     *Object
	raw     *trackingReader
	gz      *gzip.Reader
	br      *bufio.Reader
	maxLine int
	line    int
	bytes   int64
	buf     []byte
	err     error
}

// OpenLines opens data file f for reading lines of at most maxLine bytes
// (DefaultMaxLine when 0). ifMatch pins the S3 object to the ETag seen by
// CheckMD5.
func (e *Export) OpenLines(ctx context.Context, f File, ifMatch string, maxLine int) (*Lines, error) {
	obj, err := e.Store.Open(ctx, f.Name, ifMatch)
	if err != nil {
		return nil, err
	}
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	return &Lines{obj: obj, raw: &trackingReader{r: obj.Body}, maxLine: maxLine}, nil
}

// trackingReader remembers the error its reader returned, so a gzip error
// caused by the transport (a reset connection) is told apart from damaged
// data.
type trackingReader struct {
	r   io.Reader
	err error
	n   int64
}

func (t *trackingReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.n += int64(n)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

// Line is the 1-based number of the line Next returned last.
func (l *Lines) Line() int { return l.line }

// Bytes is the number of decompressed bytes consumed so far, newlines
// included.
func (l *Lines) Bytes() int64 { return l.bytes }

// CompressedBytes is the number of object bytes read so far.
func (l *Lines) CompressedBytes() int64 { return l.raw.n }

// Close closes the object.
func (l *Lines) Close() error {
	if l.gz != nil {
		_ = l.gz.Close()
	}
	return l.obj.Body.Close()
}

// Next returns the next line without its '\n' (and without a trailing
// '\r'), valid until the next call. At the end of the file it returns
// io.EOF. A line over the limit returns its first ExcerptBytes and an error
// wrapping ErrLineTooLong; the rest of it is skipped and the next call
// reads on. A damaged gzip stream returns an error wrapping ErrCorrupt, a
// failure to read the object any other error; both end the file.
func (l *Lines) Next() ([]byte, error) {
	if l.err != nil {
		return nil, l.err
	}
	if l.gz == nil {
		gz, err := gzip.NewReader(l.raw)
		if err != nil {
			return nil, l.fail(err)
		}
		l.gz = gz
		l.br = bufio.NewReaderSize(gz, 64<<10)
	}
	l.buf = l.buf[:0]
	tooLong := false
	for {
		chunk, err := l.br.ReadSlice('\n')
		l.bytes += int64(len(chunk))
		if !tooLong {
			if len(l.buf)+len(chunk) > l.maxLine+1 {
				tooLong = true
				keep := min(len(chunk), max(0, ExcerptBytes-len(l.buf)))
				l.buf = append(l.buf, chunk[:keep]...)
			} else {
				l.buf = append(l.buf, chunk...)
			}
		}
		switch {
		case err == nil:
			// a full line
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF:
			if len(l.buf) == 0 && !tooLong {
				l.err = io.EOF
				return nil, io.EOF
			}
			l.err = io.EOF // the last line has no '\n'
		default:
			return nil, l.fail(err)
		}
		l.line++
		if tooLong {
			return l.buf[:min(len(l.buf), ExcerptBytes)], fmt.Errorf("%w: line %d is longer than %d bytes", ErrLineTooLong, l.line, l.maxLine)
		}
		b := l.buf
		if n := len(b); n > 0 && b[n-1] == '\n' {
			b = b[:n-1]
		}
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
		if len(b) > l.maxLine {
			return b[:min(len(b), ExcerptBytes)], fmt.Errorf("%w: line %d is longer than %d bytes", ErrLineTooLong, l.line, l.maxLine)
		}
		return b, nil
	}
}

// fail classifies a read error: the transport's own, or a damaged stream.
func (l *Lines) fail(err error) error {
	if l.raw.err != nil {
		l.err = fmt.Errorf("export: read %s: %w", l.obj.describe(), l.raw.err)
	} else {
		l.err = fmt.Errorf("%w: %v (after line %d)", ErrCorrupt, err, l.line)
	}
	return l.err
}

func (o *Object) describe() string {
	if o.ETag != "" {
		return "object (ETag " + o.ETag + ")"
	}
	return "object"
}
