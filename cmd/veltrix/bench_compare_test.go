package main

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestComparePassesOnlyTheBenchsOwnFlags(t *testing.T) {
	cmd := benchCmd(&conn{})
	if err := cmd.ParseFlags([]string{"--compare", "main", "--rounds", "5", "--peers", "veltrix-rf1,etcd-1", "--duration", "1s", "-o", "json", "--sync=false", "-v", "--import-nodes", "1,3"}); err != nil {
		t.Fatal(err)
	}
	got := passThroughFlags(cmd.LocalNonPersistentFlags())
	want := []string{"--duration=1s", "--import-nodes=1,3", "--peers=veltrix-rf1,etcd-1", "--sync=false"}
	if !slices.Equal(got, want) {
		t.Errorf("passed %v, want %v", got, want)
	}
	env := compareEnv([]string{"VELTRIX_COMPARE=main", "VELTRIX_ROUNDS=3", "VELTRIX_OUTPUT=yaml", "VELTRIX_KEYS=10", "PATH=/bin"})
	if !slices.Equal(env, []string{"VELTRIX_KEYS=10", "PATH=/bin"}) {
		t.Errorf("env %v", env)
	}
}

func TestUntar(t *testing.T) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	add := func(h *tar.Header, body string) {
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	add(&tar.Header{Name: "pax_global_header", Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": "x"}}, "")
	add(&tar.Header{Name: "cmd/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	add(&tar.Header{Name: "cmd/main.go", Typeflag: tar.TypeReg, Mode: 0o644}, "package main\n")
	add(&tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Mode: 0o644}, "no")
	add(&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "cmd/main.go"}, "")
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "src")
	if err := untar(&b, dir); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "link")); err != nil || string(got) != "package main\n" {
		t.Errorf("link: %q %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "..", "escape")); err == nil {
		t.Error("an entry outside the directory was written")
	}
}
