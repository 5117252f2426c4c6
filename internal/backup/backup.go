// Package backup writes an installation's data dir to one tar stream and
// restores it into an empty data dir: the platform's disaster recovery.
//
// A backup is a plain tar. Its first entry is the manifest
// (ManifestName), its second the store file, copied in one read
// transaction so that its records agree with each other; then every other
// regular file of the data dir (git repositories, the embedded registry's
// images, certificates and keys), each as it was when read. Sockets,
// links and what the caller skips (the config key, which is kept apart:
// the store's values are sealed under it, so a backup alone discloses no
// app's config) are left out.
package backup

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ManifestName is the first entry of every backup.
const ManifestName = "paas-backup.json"

// Format is the version of the layout Write writes and Restore reads.
const Format = 1

// Manifest says what a backup holds.
type Manifest struct {
	Format       int       `json:"format"`
	Installation string    `json:"installation"`
	Version      string    `json:"version"` // of the paasd that wrote it
	CreatedAt    time.Time `json:"created_at"`
	Apps         int       `json:"apps"`
	// Images: the embedded registry's images are in it (no --no-images).
	Images bool `json:"images"`
	// Registry is where the releases' images were named when it was made
	// (HOST:PORT/NAME): a restore at another address renames them.
	Registry string `json:"registry,omitempty"`
}

// Source is what Write reads: a data dir and its store.
type Source struct {
	Dir string
	// StoreFile is the store's file name in Dir, written from Snapshot
	// rather than read from the disk.
	StoreFile string
	Snapshot  func(fn func(size int64, file io.WriterTo) error) error
	// Skip reports whether rel (slash-separated, relative to Dir) is left
	// out; for a directory, with everything in it.
	Skip func(rel string, dir bool) bool
}

// Summary counts what Write wrote.
type Summary struct {
	Files int
	Bytes int64
}

// Write writes the backup of src, described by m, to w.
func Write(w io.Writer, src Source, m Manifest) (Summary, error) {
	var sum Summary
	tw := tar.NewWriter(w)
	m.Format = Format
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return sum, err
	}
	if err := writeFile(tw, ManifestName, 0o600, m.CreatedAt, int64(len(manifest)), strings.NewReader(string(manifest))); err != nil {
		return sum, err
	}
	err = src.Snapshot(func(size int64, file io.WriterTo) error {
		hdr := &tar.Header{Name: src.StoreFile, Mode: 0o600, Size: size, ModTime: m.CreatedAt, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		n, err := file.WriteTo(tw)
		sum.Bytes += n
		return err
	})
	if err != nil {
		return sum, fmt.Errorf("back up the store: %w", err)
	}
	sum.Files++
	err = filepath.WalkDir(src.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed since it was listed (an image collected)
			}
			return err
		}
		rel, err := filepath.Rel(src.Dir, path)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		// The store is written from its snapshot; a restore's marker and
		// its unfinished copy are no data of the installation.
		if rel == src.StoreFile || rel == RestoredName || strings.HasPrefix(rel, restoreTmpPrefix) ||
			src.Skip != nil && src.Skip(rel, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return tw.WriteHeader(&tar.Header{Name: rel + "/", Mode: int64(info.Mode().Perm()), ModTime: info.ModTime(), Typeflag: tar.TypeDir, Format: tar.FormatPAX})
		case info.Mode().IsRegular():
			n, err := copyFile(tw, path, rel, info)
			if err != nil {
				return err
			}
			sum.Files++
			sum.Bytes += n
		}
		return nil // sockets, links, devices: not data
	})
	if err != nil {
		return sum, fmt.Errorf("back up %s: %w", src.Dir, err)
	}
	return sum, tw.Close()
}

// copyFile writes the file at path as entry rel. Its size is the open
// file's: a file that grows meanwhile is cut there, one that shrinks is
// an error rather than a backup that holds what was never in it.
func copyFile(tw *tar.Writer, path, rel string, info fs.FileInfo) (int64, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if info, err = f.Stat(); err != nil {
		return 0, err
	}
	if err := writeFile(tw, rel, info.Mode().Perm(), info.ModTime(), info.Size(), f); err != nil {
		return 0, fmt.Errorf("%s: %w", rel, err)
	}
	return info.Size(), nil
}

func writeFile(tw *tar.Writer, name string, mode fs.FileMode, mtime time.Time, size int64, r io.Reader) error {
	hdr := &tar.Header{Name: name, Mode: int64(mode), Size: size, ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.CopyN(tw, r, size)
	if err == io.EOF {
		return fmt.Errorf("shrank from %d to %d bytes while read", size, n)
	}
	return err
}

// RestoredName is the file Restore leaves in the data dir: the manifest of
// the backup restored, until paasd has rolled every app out again.
const RestoredName = "restored.json"

// restoreTmpPrefix starts the directory Restore writes into first.
const restoreTmpPrefix = ".restore-"

// Restore reads a backup from r into dir, which must be missing or empty
// but for the files keep allows (the config key put back beforehand).
// The entries are written to a directory inside dir first and checked
// with check (that the config key opens the store), then moved in place;
// on an error before that, dir is left as it was. It leaves RestoredName
// in dir.
func Restore(r io.Reader, dir string, keep func(name string) bool, check func(dir string) error) (Manifest, Summary, error) {
	var m Manifest
	var sum Summary
	existing, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return m, sum, err
	}
	for _, e := range existing {
		if keep == nil || !keep(e.Name()) || !e.Type().IsRegular() {
			return m, sum, fmt.Errorf("%s is not empty (it holds %s): restore into a new data dir, or move this one away", dir, e.Name())
		}
	}
	created := errors.Is(err, fs.ErrNotExist)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return m, sum, err
	}
	// Inside dir, so that moving the entries in place is a rename on one
	// file system even when dir is a mount point.
	tmp, err := os.MkdirTemp(dir, restoreTmpPrefix)
	if err != nil {
		return m, sum, err
	}
	moved := false
	defer func() {
		os.RemoveAll(tmp)
		if created && !moved {
			os.Remove(dir)
		}
	}()
	if m, sum, err = extract(r, tmp); err != nil {
		return m, sum, err
	}
	if check != nil {
		if err := check(tmp); err != nil {
			return m, sum, err
		}
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return m, sum, err
	}
	for _, e := range entries {
		if _, err := os.Lstat(filepath.Join(dir, e.Name())); err == nil {
			return m, sum, fmt.Errorf("refused: the backup holds %s, which is in %s already", e.Name(), dir)
		}
	}
	moved = true // from here on, dir holds the backup, or part of it
	for _, e := range entries {
		if err := os.Rename(filepath.Join(tmp, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			return m, sum, fmt.Errorf("move the restored %s in place: %w", e.Name(), err)
		}
	}
	data, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, RestoredName), data, 0o600); err != nil {
		return m, sum, err
	}
	return m, sum, os.Chmod(dir, 0o700)
}

// extract writes the entries of the backup in r under dir, refusing any
// that is not a plain file or directory inside it.
func extract(r io.Reader, dir string) (Manifest, Summary, error) {
	var m Manifest
	var sum Summary
	tr := tar.NewReader(r)
	hdr, err := tr.Next()
	if err != nil || hdr.Name != ManifestName {
		return m, sum, errors.New("not a paas backup: its first entry is not " + ManifestName)
	}
	if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&m); err != nil {
		return m, sum, fmt.Errorf("not a paas backup: %s: %w", ManifestName, err)
	}
	if m.Format != Format {
		return m, sum, fmt.Errorf("a backup of format %d: this paasd reads format %d", m.Format, Format)
	}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return m, sum, fmt.Errorf("read the backup: %w", err)
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		if !filepath.IsLocal(filepath.FromSlash(name)) || strings.Contains(name, "\\") {
			return m, sum, fmt.Errorf("refused: the backup's entry %q is not a path inside the data dir", hdr.Name)
		}
		if name == RestoredName {
			return m, sum, fmt.Errorf("refused: the backup holds %s, which only a restore writes", RestoredName)
		}
		path := filepath.Join(dir, filepath.FromSlash(name))
		mode := fs.FileMode(hdr.Mode).Perm() & 0o755
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o700); err != nil {
				return m, sum, err
			}
			if err := os.Chmod(path, mode|0o700); err != nil {
				return m, sum, err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return m, sum, err
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode|0o600)
			if err != nil {
				return m, sum, fmt.Errorf("restore %s: %w", name, err)
			}
			n, err := io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return m, sum, fmt.Errorf("restore %s: %w", name, err)
			}
			os.Chtimes(path, hdr.ModTime, hdr.ModTime)
			sum.Files++
			sum.Bytes += n
		default:
			return m, sum, fmt.Errorf("refused: the backup's entry %q is not a file or a directory", hdr.Name)
		}
	}
	return m, sum, nil
}
