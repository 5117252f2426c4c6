package builder

import (
	"archive/tar"
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// writeContext writes dir as a tar build context to w. Symbolic links are
// archived as links, never followed, so nothing outside dir is read. Paths
// matched by dir's .dockerignore are left out, except the Dockerfile and
// .dockerignore themselves, which the daemon needs.
func writeContext(w io.Writer, dir, dockerfile string) error {
	ignore, err := readDockerignore(dir)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if rel != dockerfile && rel != ".dockerignore" && ignore.excludes(rel) {
			if d.IsDir() && !ignore.hasExceptions() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		switch mode := info.Mode(); {
		case mode.IsRegular(), mode.IsDir():
		case mode&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			return nil // sockets, devices and pipes have no place in an image
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = rel
		if d.IsDir() {
			hdr.Name += "/"
		}
		// Reproducible contexts: ownership is the daemon's business.
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return fmt.Errorf("archive build context: %w", err)
	}
	return tw.Close()
}

// ignoreRule is one line of a .dockerignore file.
type ignoreRule struct {
	re     *regexp.Regexp
	negate bool
}

type ignoreRules []ignoreRule

// readDockerignore parses dir/.dockerignore; a missing file ignores nothing.
func readDockerignore(dir string) (ignoreRules, error) {
	f, err := os.Open(filepath.Join(dir, ".dockerignore"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read .dockerignore: %w", err)
	}
	defer f.Close()
	return parseDockerignore(f)
}

// parseDockerignore reads .dockerignore patterns: one per line, # comments,
// a leading ! re-includes, * and ? match within a path element, ** matches
// any number of elements, a pattern matching a directory matches everything
// below it, and the last matching pattern wins.
func parseDockerignore(r io.Reader) (ignoreRules, error) {
	var rules ignoreRules
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		negate := strings.HasPrefix(line, "!")
		if negate {
			line = strings.TrimSpace(line[1:])
		}
		line = path.Clean(filepath.ToSlash(line))
		line = strings.TrimPrefix(line, "/")
		if line == "." || line == "" {
			continue
		}
		re, err := patternRegexp(line)
		if err != nil {
			return nil, fmt.Errorf("parse .dockerignore pattern %q: %w", line, err)
		}
		rules = append(rules, ignoreRule{re: re, negate: negate})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read .dockerignore: %w", err)
	}
	return rules, nil
}

// patternRegexp translates a .dockerignore pattern into a regular expression
// matching a slash separated path relative to the context root.
func patternRegexp(pattern string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		switch c {
		case '*':
			if i+1 < len(pattern) && pattern[i+1] == '*' {
				i++
				if i+1 < len(pattern) && pattern[i+1] == '/' {
					i++
					b.WriteString("(.*/)?") // "**/" : zero or more directories
				} else {
					b.WriteString(".*")
				}
			} else {
				b.WriteString("[^/]*")
			}
		case '?':
			b.WriteString("[^/]")
		case '[':
			j := strings.IndexByte(pattern[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unterminated character class")
			}
			class := pattern[i+1 : i+j]
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			b.WriteString("[" + class + "]")
			i += j
		case '\\':
			if i+1 < len(pattern) {
				i++
				b.WriteString(regexp.QuoteMeta(string(pattern[i])))
			}
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	// A pattern naming a directory also names everything below it.
	b.WriteString("(/.*)?$")
	return regexp.Compile(b.String())
}

// excludes reports whether the slash separated relative path p is left out.
func (rs ignoreRules) excludes(p string) bool {
	excluded := false
	for _, r := range rs {
		if r.re.MatchString(p) {
			excluded = !r.negate
		}
	}
	return excluded
}

// hasExceptions reports whether some rule re-includes paths, in which case an
// excluded directory must still be walked.
func (rs ignoreRules) hasExceptions() bool {
	for _, r := range rs {
		if r.negate {
			return true
		}
	}
	return false
}
