package deploy

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// ArchiveLimits bound an archive a user uploads (git:from-archive).
type ArchiveLimits struct {
	MaxFiles int   // entries
	MaxBytes int64 // bytes read, compressed or not
	files    int
}

// entry counts one entry and checks a symlink stays inside the archive.
func (l *ArchiveLimits) entry(name string, typ byte, link string) error {
	if l == nil {
		return nil
	}
	l.files++
	if l.files > l.MaxFiles {
		return fmt.Errorf("the archive has more than %d entries", l.MaxFiles)
	}
	if typ == tar.TypeSymlink {
		target := path.Join(path.Dir(path.Clean(name)), link) // relative: ".." stays when it climbs out
		if path.IsAbs(link) || link == "" || target == ".." || strings.HasPrefix(target, "../") {
			return fmt.Errorf("archive entry %q links outside the archive (%q)", name, link)
		}
	}
	if typ == tar.TypeLink {
		return fmt.Errorf("archive entry %q is a hard link: not supported", name)
	}
	return nil
}

// errTooBig is returned by a cappedReader past its limit.
var errTooBig = errors.New("archive too large")

type cappedReader struct {
	r    io.Reader
	left int64
	max  int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("%w: more than %d bytes", errTooBig, c.max)
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// UnpackArchive unpacks an uploaded archive of kind tar, tar.gz or zip into
// dir (which must exist), within lim, refusing entries that leave dir
// (absolute paths, "..", symlinks pointing out) and hard links.
func UnpackArchive(r io.Reader, kind, dir string, lim ArchiveLimits) error {
	capped := &cappedReader{r: r, left: lim.MaxBytes, max: lim.MaxBytes}
	switch kind {
	case "tar":
		return untar(capped, dir, &lim)
	case "tar.gz":
		zr, err := gzip.NewReader(capped)
		if err != nil {
			return fmt.Errorf("read gzip: %w", err)
		}
		defer zr.Close()
		// the uncompressed size is bounded too
		return untar(&cappedReader{r: zr, left: lim.MaxBytes, max: lim.MaxBytes}, dir, &lim)
	case "zip":
		return unzip(capped, dir, &lim)
	default:
		return fmt.Errorf("unknown archive type %q", kind)
	}
}

// unzip spools r to a temporary file (zip needs random access) and unpacks
// it as untar does, through a tar stream.
func unzip(r io.Reader, dir string, lim *ArchiveLimits) error {
	f, err := os.CreateTemp("", "paas-archive-*.zip")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	size, err := io.Copy(f, r)
	if err != nil {
		return fmt.Errorf("read archive: %w", err)
	}
	zr, err := zip.NewReader(f, size)
	if err != nil {
		return fmt.Errorf("read zip: %w", err)
	}
	if len(zr.File) > lim.MaxFiles {
		return fmt.Errorf("the archive has more than %d entries", lim.MaxFiles)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(zipToTar(zr, pw, lim.MaxBytes)) }()
	err = untar(pr, dir, lim)
	pr.CloseWithError(errors.New("unpack stopped"))
	return err
}

// zipToTar rewrites a zip's entries as a tar stream, at most max bytes of
// content in all.
func zipToTar(zr *zip.Reader, w io.Writer, max int64) error {
	tw := tar.NewWriter(w)
	left := max
	for _, zf := range zr.File {
		h := &tar.Header{Name: zf.Name, Mode: int64(zf.Mode().Perm()), ModTime: zf.Modified}
		mode := zf.Mode()
		switch {
		case mode.IsDir():
			h.Typeflag = tar.TypeDir
		case mode&os.ModeSymlink != 0:
			rc, err := zf.Open()
			if err != nil {
				return err
			}
			link, err := io.ReadAll(io.LimitReader(rc, 4096))
			rc.Close()
			if err != nil {
				return err
			}
			h.Typeflag, h.Linkname = tar.TypeSymlink, string(link)
		case mode.IsRegular():
			if int64(zf.UncompressedSize64) > left {
				return fmt.Errorf("%w: more than %d bytes", errTooBig, max)
			}
			left -= int64(zf.UncompressedSize64)
			h.Typeflag, h.Size = tar.TypeReg, int64(zf.UncompressedSize64)
		default:
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			rc, err := zf.Open()
			if err != nil {
				return err
			}
			_, err = io.CopyN(tw, rc, h.Size)
			rc.Close()
			if err != nil {
				return fmt.Errorf("read %s: %w", zf.Name, err)
			}
		}
	}
	return tw.Close()
}
