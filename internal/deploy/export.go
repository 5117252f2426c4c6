package deploy

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// exportTo runs export and unpacks its tar stream into dir, refusing any entry
// that would land outside dir.
func exportTo(ctx context.Context, export func(context.Context, io.Writer) error, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		err := export(ctx, pw)
		pw.CloseWithError(err)
		errc <- err
	}()
	uerr := untar(pr, dir, nil)
	if uerr == nil {
		io.Copy(io.Discard, pr) // the padding after the end-of-archive marker
	}
	pr.CloseWithError(errors.New("unpack stopped"))
	eerr := <-errc
	switch {
	case eerr != nil && (uerr == nil || errors.Is(uerr, eerr)):
		return eerr // the export failed first
	case uerr != nil:
		return uerr // the reason; the export then only failed to write the rest
	}
	return nil
}

// untar unpacks r under dir through an os.Root, so no entry can reach outside
// dir, not even through a symlink an earlier entry created. With lim (an
// archive a user uploaded), entries are counted and symlinks must stay
// inside dir.
func untar(r io.Reader, dir string, lim *ArchiveLimits) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		name := filepath.Clean(h.Name)
		if lim != nil && name == "." && h.Typeflag == tar.TypeDir {
			continue // "./" heads many archives
		}
		if name == "." || filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("archive entry %q leaves the build dir", h.Name)
		}
		if err := lim.entry(h.Name, h.Typeflag, h.Linkname); err != nil {
			return err
		}
		target := name
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("archive entry %q: %w", h.Name, err)
			}
		case tar.TypeReg:
			if err := root.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return fmt.Errorf("archive entry %q: %w", h.Name, err)
			}
			mode := os.FileMode(0o644)
			if h.Mode&0o111 != 0 {
				mode = 0o755
			}
			// O_EXCL: an entry never writes through an existing file or link.
			f, err := root.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
			if err != nil {
				return fmt.Errorf("archive entry %q: %w", h.Name, err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			// Links are kept as links; the builder does not follow them out of the dir.
			if err := root.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return fmt.Errorf("archive entry %q: %w", h.Name, err)
			}
			if err := root.Symlink(h.Linkname, target); err != nil {
				return fmt.Errorf("archive entry %q: %w", h.Name, err)
			}
		case tar.TypeXGlobalHeader:
			// git archive puts the commit id here
		default:
			// submodules (gitlinks) and other types carry no content to build
		}
	}
}
