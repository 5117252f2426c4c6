package deploy

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"paas/internal/paas"
)

func TestParseProcfile(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    []paas.ProcessType
		wantErr string
	}{
		{
			name: "empty file has a web process",
			data: "",
			want: []paas.ProcessType{{Name: "web"}},
		},
		{
			name: "web and worker",
			data: "web: ./server --port $PORT\nworker: ./worker\n",
			want: []paas.ProcessType{{Name: "web", Command: "./server --port $PORT"}, {Name: "worker", Command: "./worker"}},
		},
		{
			name: "comments, blank lines, CRLF and spaces",
			data: "# processes\r\n\r\n   \n  web :  bin/web  \r\n\t# worker: no\nclock: bin/clock\n",
			want: []paas.ProcessType{{Name: "web", Command: "bin/web"}, {Name: "clock", Command: "bin/clock"}},
		},
		{
			name: "missing web is added first",
			data: "worker: ./worker\n",
			want: []paas.ProcessType{{Name: "web"}, {Name: "worker", Command: "./worker"}},
		},
		{
			name: "colon in the command",
			data: "web: sh -c 'echo a:b'",
			want: []paas.ProcessType{{Name: "web", Command: "sh -c 'echo a:b'"}},
		},
		{name: "duplicate", data: "web: a\nworker: b\nweb: c\n", wantErr: `line 3: process type "web" defined twice`},
		{name: "uppercase name", data: "Web: a\n", wantErr: "line 1"},
		{name: "underscore name", data: "web: a\nmy_worker: b\n", wantErr: "line 2"},
		{name: "dotted name", data: "../x: a\n", wantErr: "line 1"},
		{name: "no colon", data: "web ./server\n", wantErr: "line 1"},
		{name: "empty command", data: "web:\n", wantErr: "line 1"},
		{name: "empty name", data: ": ./server\n", wantErr: "line 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseProcfile([]byte(tc.data))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseProcfile = %v, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("ParseProcfile = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestReadProcfile(t *testing.T) {
	t.Run("no Procfile", func(t *testing.T) {
		got, err := ReadProcfile(t.TempDir())
		if err != nil || !slices.Equal(got, []paas.ProcessType{{Name: "web"}}) {
			t.Fatalf("ReadProcfile = %+v, %v", got, err)
		}
	})
	t.Run("Procfile", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "Procfile"), []byte("worker: w\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := ReadProcfile(dir)
		if err != nil || !slices.Equal(got, []paas.ProcessType{{Name: "web"}, {Name: "worker", Command: "w"}}) {
			t.Fatalf("ReadProcfile = %+v, %v", got, err)
		}
	})
	t.Run("Procfile is a directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "Procfile"), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadProcfile(dir); err == nil {
			t.Fatal("ReadProcfile of a directory succeeded")
		}
	})
}

// entry is one tar entry to write.
type entry struct {
	name     string
	typ      byte
	body     string
	mode     int64
	linkname string
}

func file(name, body string) entry {
	return entry{name: name, typ: tar.TypeReg, body: body, mode: 0o644}
}

func tarExport(entries ...entry) func(context.Context, io.Writer) error {
	return func(_ context.Context, w io.Writer) error {
		tw := tar.NewWriter(w)
		for _, e := range entries {
			mode := e.mode
			if mode == 0 {
				mode = 0o755
			}
			h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: mode, Size: int64(len(e.body)), Linkname: e.linkname, Format: tar.FormatPAX}
			if e.typ == tar.TypeXGlobalHeader {
				// what git archive writes first: the commit id
				h = &tar.Header{Typeflag: e.typ, PAXRecords: map[string]string{"comment": "c0ffee"}}
			}
			if e.typ != tar.TypeReg {
				h.Size = 0
			}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if _, err := io.WriteString(tw, e.body); err != nil {
				return err
			}
		}
		return tw.Close()
	}
}

// tree lists the regular files, dirs and links under root as "path" (dirs end in
// "/", links as "path -> target") with file contents.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "-> " + target
		case d.IsDir():
			out[rel+"/"] = ""
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = string(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestExportTo(t *testing.T) {
	normal := []entry{
		{name: "pax_global_header", typ: tar.TypeXGlobalHeader},
		{name: "src/", typ: tar.TypeDir},
		file("Dockerfile", "FROM scratch\n"),
		file("src/main.go", "package main\n"),
		{name: "bin/run", typ: tar.TypeReg, body: "#!/bin/sh\n", mode: 0o755},
		{name: "link", typ: tar.TypeSymlink, linkname: "src/main.go"},
		{name: "vendor/mod", typ: tar.TypeGNULongName + 100}, // an unknown type: skipped
	}
	normalTree := map[string]string{
		"src/": "", "bin/": "",
		"Dockerfile": "FROM scratch\n", "src/main.go": "package main\n", "bin/run": "#!/bin/sh\n",
		"link": "-> src/main.go",
	}
	tests := []struct {
		name     string
		entries  func(base string) []entry
		wantTree map[string]string // files under the build dir after the export
		wantErr  bool
	}{
		{
			name:     "normal tree",
			entries:  func(string) []entry { return normal },
			wantTree: normalTree,
		},
		{
			name:     "dot-slash names",
			entries:  func(string) []entry { return []entry{file("./Dockerfile", "x"), file("./a/./b", "y")} },
			wantTree: map[string]string{"Dockerfile": "x", "a/": "", "a/b": "y"},
		},
		{
			name:     "parent entry after a normal tree",
			entries:  func(string) []entry { return append(slices.Clone(normal), file("../evil", "pwned")) },
			wantTree: normalTree,
			wantErr:  true,
		},
		{
			name:     "parent entry first",
			entries:  func(string) []entry { return append([]entry{file("../evil", "pwned")}, normal...) },
			wantTree: map[string]string{},
			wantErr:  true,
		},
		{
			name:     "parent hidden in the middle",
			entries:  func(string) []entry { return []entry{file("a/../../evil", "pwned")} },
			wantTree: map[string]string{},
			wantErr:  true,
		},
		{
			name:     "parent directory",
			entries:  func(string) []entry { return []entry{{name: "../evil-dir/", typ: tar.TypeDir}} },
			wantTree: map[string]string{},
			wantErr:  true,
		},
		{
			name: "absolute path",
			entries: func(base string) []entry {
				return append(slices.Clone(normal), file(filepath.Join(base, "evil"), "pwned"))
			},
			wantTree: normalTree,
			wantErr:  true,
		},
		{
			name:     "absolute root",
			entries:  func(string) []entry { return []entry{{name: "/", typ: tar.TypeDir}} },
			wantTree: map[string]string{},
			wantErr:  true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, "build")
			err := exportTo(context.Background(), tarExport(tc.entries(base)...), dir)
			if tc.wantErr != (err != nil) {
				t.Fatalf("exportTo err = %v, want error %v", err, tc.wantErr)
			}
			got := tree(t, base)
			want := map[string]string{"build/": ""}
			for k, v := range tc.wantTree {
				want["build/"+k] = v
			}
			if !equalTree(got, want) {
				t.Fatalf("files under the temp dir:\n%q\nwant\n%q", got, want)
			}
			if fi, err := os.Stat(filepath.Join(dir, "bin/run")); err == nil && fi.Mode().Perm()&0o111 == 0 {
				t.Fatalf("bin/run lost its executable bit: %v", fi.Mode())
			}
			if fi, err := os.Stat(filepath.Join(dir, "Dockerfile")); err == nil && fi.Mode().Perm()&0o111 != 0 {
				t.Fatalf("Dockerfile became executable: %v", fi.Mode())
			}
		})
	}
}

func equalTree(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestExportToExportError(t *testing.T) {
	boom := errors.New("git archive failed")
	tests := []struct {
		name   string
		export func(context.Context, io.Writer) error
	}{
		{"fails before writing", func(context.Context, io.Writer) error { return boom }},
		{"fails after a partial tar", func(_ context.Context, w io.Writer) error {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tw.WriteHeader(&tar.Header{Name: "Dockerfile", Typeflag: tar.TypeReg, Size: 100, Mode: 0o644})
			tw.Write([]byte("FROM"))
			w.Write(buf.Bytes())
			return boom
		}},
		{"fails after a complete tar", func(ctx context.Context, w io.Writer) error {
			if err := tarExport(file("Dockerfile", "x"))(ctx, w); err != nil {
				return err
			}
			return boom
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := exportTo(context.Background(), tc.export, filepath.Join(t.TempDir(), "build"))
			if !errors.Is(err, boom) {
				t.Fatalf("exportTo = %v, want the export's error", err)
			}
		})
	}
}

func TestExportToNotATar(t *testing.T) {
	export := func(_ context.Context, w io.Writer) error {
		_, err := io.WriteString(w, strings.Repeat("this is not a tar archive\n", 100))
		return err
	}
	if err := exportTo(context.Background(), export, filepath.Join(t.TempDir(), "build")); err == nil {
		t.Fatal("exportTo of garbage succeeded")
	}
}
