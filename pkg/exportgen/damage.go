package exportgen

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// readManifestFiles reads manifest-files.json.
func (e *Export) readManifestFiles() ([]manifestFile, error) {
	b, err := os.ReadFile(filepath.Join(e.Dir, "manifest-files.json"))
	if err != nil {
		return nil, err
	}
	var out []manifestFile
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var f manifestFile
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, sc.Err()
}

// editManifest rewrites data file f's manifest line and the manifest's
// checksum file.
func (e *Export) editManifest(f int, edit func(*manifestFile)) error {
	files, err := e.readManifestFiles()
	if err != nil {
		return err
	}
	if f < 0 || f >= len(files) {
		return fmt.Errorf("exportgen: no data file %d", f)
	}
	edit(&files[f])
	var buf bytes.Buffer
	for _, mf := range files {
		b, err := json.Marshal(mf)
		if err != nil {
			return err
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	return writeWithMD5(e.Dir, "manifest-files", buf.Bytes())
}

// Truncate cuts data file f to the given fraction of its gzip bytes, as an
// interrupted copy would, and records the truncated file's MD5 in the
// manifest (so the damage shows as a corrupt gzip stream, not as a
// checksum mismatch). The lines before the cut stay readable.
func (e *Export) Truncate(f int, fraction float64) error {
	path := filepath.Join(e.Dir, filepath.FromSlash(e.Files[f].Name))
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	b = b[:int(float64(len(b))*fraction)]
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	sum := md5.Sum(b)
	e.Files[f].MD5 = base64.StdEncoding.EncodeToString(sum[:])
	return e.editManifest(f, func(mf *manifestFile) { mf.MD5Checksum = e.Files[f].MD5 })
}

// BreakChecksum records a wrong MD5 for data file f in the manifest.
func (e *Export) BreakChecksum(f int) error {
	wrong := md5.Sum([]byte("not the data"))
	return e.editManifest(f, func(mf *manifestFile) { mf.MD5Checksum = base64.StdEncoding.EncodeToString(wrong[:]) })
}

// SetItemCount records a wrong item count for data file f in the manifest.
func (e *Export) SetItemCount(f, n int) error {
	return e.editManifest(f, func(mf *manifestFile) { mf.ItemCount = n })
}
