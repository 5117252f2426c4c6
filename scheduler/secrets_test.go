package scheduler

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"path"
	"testing"

	"github.com/docker/docker/api/types/container"
)

// containerFiles is a Docker API that knows a created container's files
// and records what is copied into it.
type containerFiles struct {
	DockerAPI
	files  map[string]string
	dst    string
	copied []*tar.Header
	data   map[string]string
}

func (f *containerFiles) CopyFromContainer(_ context.Context, _, p string) (io.ReadCloser, container.PathStat, error) {
	data, ok := f.files[p]
	if !ok {
		return nil, container.PathStat{}, errors.New("Could not find the file " + p + " in container")
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: path.Base(p), Mode: 0o644, Size: int64(len(data))})
	io.WriteString(tw, data)
	tw.Close()
	return io.NopCloser(&buf), container.PathStat{Name: path.Base(p)}, nil
}

func (f *containerFiles) CopyToContainer(_ context.Context, _, dst string, r io.Reader, _ container.CopyToContainerOptions) error {
	f.dst, f.data = dst, map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(tr)
		f.copied = append(f.copied, h)
		f.data[h.Name] = string(b)
	}
}

// The file a one-off task reads its config from, and its directory, belong
// to the user the task runs as, so the env wrapper may remove the file.
func TestCopyEnvOwner(t *testing.T) {
	etc := map[string]string{
		"/etc/passwd": "root:x:0:0:root:/root:/bin/sh\ncnb:x:1001:1002::/home/cnb:/bin/sh\n",
		"/etc/group":  "root:x:0:\ncnb:x:1002:\nstaff:x:50:\n",
	}
	for _, c := range []struct {
		name, user string
		files      map[string]string
		uid, gid   int
		err        bool
	}{
		{"root, no USER", "", nil, 0, 0, false},
		{"IDs, no /etc/passwd (FROM scratch)", "1000:1000", nil, 1000, 1000, false},
		{"a name", "cnb", etc, 1001, 1002, false},
		{"a name and a group", "cnb:staff", etc, 1001, 50, false},
		{"a name the image does not have", "nobody-here", etc, 0, 0, true},
		{"a name without /etc/passwd", "cnb", nil, 0, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &containerFiles{files: c.files}
			err := New(f, Options{Name: "paas"}).copyEnv(context.Background(), "c1", c.user, []string{"TOKEN=s3cret"})
			if c.err {
				if err == nil || f.copied != nil {
					t.Fatalf("err %v, copied %d entries; want an error and nothing copied", err, len(f.copied))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.dst != "/" || len(f.copied) != 2 {
				t.Fatalf("copied %d entries to %s, want the directory and the file to /", len(f.copied), f.dst)
			}
			dir, file := f.copied[0], f.copied[1]
			if dir.Name != ".paas/" || dir.Typeflag != tar.TypeDir || file.Name != ".paas/env" || file.Mode != 0o400 {
				t.Fatalf("entries %s %c, %s %o", dir.Name, dir.Typeflag, file.Name, file.Mode)
			}
			for _, h := range f.copied {
				if h.Uid != c.uid || h.Gid != c.gid {
					t.Errorf("%s belongs to %d:%d, want %d:%d", h.Name, h.Uid, h.Gid, c.uid, c.gid)
				}
			}
			if got := f.data[".paas/env"]; got != `["TOKEN=s3cret"]` {
				t.Errorf("env file %q", got)
			}
		})
	}
}
