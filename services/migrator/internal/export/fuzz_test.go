package export_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/veltrixdb/veltrix/services/migrator/internal/export"
	"github.com/veltrixdb/veltrix/services/migrator/internal/testexport"
)

// FuzzLines reads arbitrary data-file content through the line reader with
// a small line limit: lines never exceed the limit, every byte is counted,
// and joining what was read gives back the input's lines.
func FuzzLines(f *testing.F) {
	for _, s := range []string{"", "a", "a\n", "a\r\nb\n\nc", "0123456789abcdefghij\nshort\n", "\n\n\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxLine = 16
		dir := t.TempDir()
		if _, err := testexport.Write(dir, testexport.Options{ChecksumExt: "-"}, testexport.File{Raw: testexport.Gzip(string(data))}); err != nil {
			t.Fatal(err)
		}
		st, err := export.OpenStore(context.Background(), dir, export.AWSOptions{})
		if err != nil {
			t.Fatal(err)
		}
		e, err := export.Load(context.Background(), st, "")
		if err != nil {
			t.Fatal(err)
		}
		l, err := e.OpenLines(context.Background(), e.Files[0], "", maxLine)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		want := bytes.Split(data, []byte("\n"))
		if len(want) > 0 && len(want[len(want)-1]) == 0 {
			want = want[:len(want)-1]
		}
		n := 0
		for {
			line, err := l.Next()
			if err == io.EOF {
				break
			}
			if n >= len(want) {
				t.Fatalf("more lines than the input has")
			}
			w := bytes.TrimSuffix(want[n], []byte("\r"))
			switch {
			case errors.Is(err, export.ErrLineTooLong):
				if len(w) <= maxLine {
					t.Fatalf("line %d (%d bytes) reported too long", n+1, len(w))
				}
			case err != nil:
				t.Fatal(err)
			case !bytes.Equal(line, w):
				t.Fatalf("line %d = %q, want %q", n+1, line, w)
			}
			n++
		}
		if n != len(want) || l.Bytes() != int64(len(data)) {
			t.Fatalf("read %d lines and %d bytes, want %d and %d", n, l.Bytes(), len(want), len(data))
		}
	})
}
