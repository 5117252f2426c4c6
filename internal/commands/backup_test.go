package commands

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"paas/internal/backup"
	"paas/internal/paas"
)

type fakeBackups struct {
	images []bool
	err    error
}

func (f *fakeBackups) Export(_ context.Context, w io.Writer, images bool) (backup.Manifest, backup.Summary, error) {
	f.images = append(f.images, images)
	if f.err != nil {
		return backup.Manifest{}, backup.Summary{}, f.err
	}
	io.WriteString(w, "TAR")
	return backup.Manifest{Installation: "paas", Apps: 2}, backup.Summary{Files: 7, Bytes: 3_500_000}, nil
}

func TestBackupExport(t *testing.T) {
	f := &fakeBackups{}
	d := NewDispatcher(nil, "1.2.3", BackupCommands(f))
	run := func(id paas.Identity, stdin io.Reader, args ...string) (int, string, string) {
		var out, errb strings.Builder
		code := d.RunCommand(context.Background(), id, args, stdin, &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, errOut := run(root, strings.NewReader(""), "backup:export")
	if code != 0 || out != "TAR" || !strings.Contains(errOut, "Backup of paas written: 2 apps, 7 files, 3.5 MB") {
		t.Fatalf("backup:export: %d %q %q", code, out, errOut)
	}
	if code, out, _ := run(root, strings.NewReader(""), "backup:export", "--no-images"); code != 0 || out != "TAR" {
		t.Fatalf("--no-images: %d %q", code, out)
	}
	if len(f.images) != 2 || !f.images[0] || f.images[1] {
		t.Fatalf("images asked: %v", f.images)
	}
	for _, tc := range []struct {
		id    paas.Identity
		stdin io.Reader
		args  []string
		want  string
	}{
		{alice, strings.NewReader(""), []string{"backup:export"}, "for administrators only"},
		{root, ttyInput{strings.NewReader("")}, []string{"backup:export"}, "redirect it to a file"},
		{root, strings.NewReader(""), []string{"backup:export", "now"}, "takes no arguments"},
		{root, strings.NewReader(""), []string{"backup:export", "--images"}, "--images"},
	} {
		code, out, errOut := run(tc.id, tc.stdin, tc.args...)
		if code == 0 || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: %d %q %q, want an error with %q", tc.args, code, out, errOut, tc.want)
		}
	}
	if len(f.images) != 2 {
		t.Errorf("a refused call exported: %v", f.images)
	}
	f.err = errors.New("disk full")
	if code, _, errOut := run(root, strings.NewReader(""), "backup:export"); code == 0 || !strings.Contains(errOut, "backup: disk full") {
		t.Fatalf("a failed export: %d %q", code, errOut)
	}
}
