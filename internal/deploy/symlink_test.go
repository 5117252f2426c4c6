package deploy

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A pushed tree can hold a symlink and then a same-named directory entry (git
// archive of a tree with duplicate entries). Nothing may land outside the dir.
func TestExportToRefusesWritesThroughSymlinks(t *testing.T) {
	tests := []struct {
		name    string
		entries []tar.Header
	}{
		{"link to parent then file under it", []tar.Header{
			{Name: "link", Typeflag: tar.TypeSymlink, Linkname: ".."},
			{Name: "link/evil", Typeflag: tar.TypeReg, Mode: 0o644},
		}},
		{"link to outside file then same-named file", []tar.Header{
			{Name: "x", Typeflag: tar.TypeSymlink, Linkname: "../victim"},
			{Name: "x", Typeflag: tar.TypeReg, Mode: 0o644},
		}},
		{"link to parent then dir under it", []tar.Header{
			{Name: "d", Typeflag: tar.TypeSymlink, Linkname: ".."},
			{Name: "d/sub/", Typeflag: tar.TypeDir, Mode: 0o755},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			victim := filepath.Join(parent, "victim")
			os.WriteFile(victim, []byte("orig"), 0o644)
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, h := range tc.entries {
				body := ""
				if h.Typeflag == tar.TypeReg {
					body = "pwned"
					h.Size = int64(len(body))
				}
				if err := tw.WriteHeader(&h); err != nil {
					t.Fatal(err)
				}
				io.WriteString(tw, body)
			}
			tw.Close()
			dir := filepath.Join(parent, "build")
			err := exportTo(context.Background(), func(_ context.Context, w io.Writer) error {
				_, err := w.Write(buf.Bytes())
				return err
			}, dir)
			if err == nil || !strings.Contains(err.Error(), "archive entry") {
				t.Fatalf("exportTo = %v, want an archive entry error", err)
			}
			if data, _ := os.ReadFile(victim); string(data) != "orig" {
				t.Fatalf("victim overwritten: %q", data)
			}
			for _, p := range []string{"evil", "sub"} {
				if _, err := os.Lstat(filepath.Join(parent, p)); err == nil {
					t.Fatalf("%s created outside the build dir", p)
				}
			}
		})
	}
}
