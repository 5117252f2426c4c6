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

	"paas/internal/paas"
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

// ps:set procfile-path: the Procfile at the path becomes the build's, a
// missing one means none, and nothing is read or written outside the dir.
func TestUseProcfile(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string // path -> content; "->x" makes a symlink to x
		path     string
		want     string // the root Procfile after; "" for none
		wantErr  string
		wantSaid string
	}{
		{name: "default path", files: map[string]string{"Procfile": "web: a"}, path: "", want: "web: a"},
		{name: "nested", files: map[string]string{"Procfile": "web: a", ".paas/Procfile": "web: b"}, path: ".paas/Procfile", want: "web: b", wantSaid: "Using the Procfile at .paas/Procfile"},
		{name: "missing means none", files: map[string]string{"Procfile": "web: a"}, path: "other/Procfile", want: "", wantSaid: "No Procfile at other/Procfile"},
		{name: "symlink out of the tree", files: map[string]string{"link": "->../secret"}, path: "link", wantErr: "read the Procfile at link"},
		{name: "root Procfile a symlink out", files: map[string]string{"Procfile": "->../secret", "p": "web: c"}, path: "p", want: "web: c"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			os.WriteFile(filepath.Join(parent, "secret"), []byte("secret"), 0o644)
			dir := filepath.Join(parent, "build")
			for name, content := range tc.files {
				p := filepath.Join(dir, name)
				os.MkdirAll(filepath.Dir(p), 0o755)
				if target, ok := strings.CutPrefix(content, "->"); ok {
					os.Symlink(target, p)
				} else {
					os.WriteFile(p, []byte(content), 0o644)
				}
			}
			var said strings.Builder
			err := useProcfile(dir, tc.path, &said)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("useProcfile = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(filepath.Join(dir, "Procfile"))
			if tc.want == "" && err == nil || tc.want != "" && string(data) != tc.want {
				t.Errorf("Procfile %q (%v), want %q", data, err, tc.want)
			}
			if !strings.Contains(said.String(), tc.wantSaid) {
				t.Errorf("said %q, want %q", said.String(), tc.wantSaid)
			}
			if data, _ := os.ReadFile(filepath.Join(parent, "secret")); string(data) != "secret" {
				t.Errorf("a file outside the build dir changed: %q", data)
			}
		})
	}
	for _, bad := range []string{"/etc/passwd", "../Procfile", "a/../../b", "a\\b", ""} {
		if _, err := paas.CleanProcfilePath(bad); err == nil {
			t.Errorf("paas.CleanProcfilePath(%q) accepted", bad)
		}
	}
	if got, err := paas.CleanProcfilePath("./.paas//Procfile"); err != nil || got != ".paas/Procfile" {
		t.Errorf("CleanProcfilePath = %q, %v", got, err)
	}
}
