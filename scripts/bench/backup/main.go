// Command backup times the platform backup against its peer in the same
// run: GNU tar of the same data dir (what an operator would run without
// it: `tar cf - -C DATA_DIR .`), each written through a pipe to a
// counting discard, interleaved, N runs each. The data dir is that of a real paasd with
// -apps apps in its store (scripts/bench/benchpaasd) and 256 MB of
// incompressible files under its registry, as images are. Three sides:
// backup.Write (what backup:export runs) and tar over a copy of that data
// dir, and `ssh paas backup:export` end to end, whose SSH stream encrypts
// every byte.
//
//	go run ./scripts/bench/backup [-n 7] [-apps 500]
//
// Target: backup.Write takes at most 1.5x tar's time at p50 (it reads the
// same files, and adds the store's snapshot). Everything it starts is
// stopped and removed at the end.
package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"paas/internal/backup"
	"paas/internal/store"
	"paas/scripts/bench/benchpaasd"
)

func main() {
	benchpaasd.Main(func(ctx context.Context, n, apps int) error {
		if n > 50 {
			n = 7 // -n's default is the API benches'; a backup takes seconds
		}
		return run(ctx, n, apps, 256)
	})
}

// counter counts what is written to it, and drops it.
type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func run(ctx context.Context, n, apps, mb int) error {
	in, err := benchpaasd.Start(ctx, "b", apps)
	if err != nil {
		return err
	}
	defer in.Close()
	// Image layers: incompressible, 4 MB each, where the registry keeps blobs.
	blobs := filepath.Join(in.DataDir, "registry", "docker", "registry", "v2", "blobs", "sha256", "be")
	buf := make([]byte, 4<<20)
	for i := range mb / 4 {
		dir := filepath.Join(blobs, fmt.Sprintf("be%062d", i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		rand.Read(buf)
		if err := os.WriteFile(filepath.Join(dir, "data"), buf, 0o644); err != nil {
			return err
		}
	}
	export := func() (int64, error) {
		s, err := in.SSH.NewSession()
		if err != nil {
			return 0, err
		}
		defer s.Close()
		var c counter
		s.Stdout, s.Stderr = &c, io.Discard
		err = s.Run("backup:export")
		return c.n, err
	}
	// The library's own cost, without the SSH stream: backup.Write over a
	// copy of the data dir (its store opened as paasd opens it), against
	// tar of the same copy.
	copyDir := filepath.Join(in.Tmp, "copy")
	if out, err := exec.CommandContext(ctx, "cp", "-a", in.DataDir, copyDir).CombinedOutput(); err != nil {
		return fmt.Errorf("copy the data dir: %v: %s", err, out)
	}
	os.Remove(filepath.Join(copyDir, "hook.sock"))
	st, err := store.OpenWithKeyFile(copyDir, filepath.Join(copyDir, store.KeyFileName), false)
	if err != nil {
		return err
	}
	defer st.Close()
	// Through a pipe, as tar's output comes to this process.
	write := func() (int64, error) {
		pr, pw, err := os.Pipe()
		if err != nil {
			return 0, err
		}
		defer pr.Close()
		var c counter
		done := make(chan error, 1)
		go func() { _, err := io.Copy(&c, pr); done <- err }()
		src := backup.Source{Dir: copyDir, StoreFile: store.FileName, Snapshot: st.Snapshot,
			Skip: func(rel string, dir bool) bool { return rel == store.KeyFileName }}
		_, err = backup.Write(pw, src, backup.Manifest{Installation: "bench", CreatedAt: time.Now()})
		pw.Close()
		if rerr := <-done; err == nil {
			err = rerr
		}
		return c.n, err
	}
	tarDir := func() (int64, error) {
		var c counter
		cmd := exec.CommandContext(ctx, "tar", "cf", "-", "-C", copyDir, "--exclude=./"+store.KeyFileName, ".")
		cmd.Stdout, cmd.Stderr = &c, os.Stderr
		err := cmd.Run()
		return c.n, err
	}
	// What each side wrote, from its first call (every call writes the same).
	bytes := map[string]int64{}
	side := func(name string, call func() (int64, error)) *benchpaasd.Side {
		return &benchpaasd.Side{Name: name, Call: func() ([]byte, error) {
			n, err := call()
			bytes[name] = n
			return nil, err
		}}
	}
	sides := []*benchpaasd.Side{side("backup.Write (the library, through a pipe)", write), side("tar cf - -C DATA_DIR . (through a pipe)", tarDir),
		side("ssh paas backup:export (end to end, Go SSH client)", export)}
	fmt.Printf("-----> %d apps, %d MB of image files\n", apps, mb)
	if err := benchpaasd.Interleave(ctx, n, sides); err != nil {
		return err
	}
	pct, ms := benchpaasd.Pct, benchpaasd.Ms
	fmt.Printf("\n| %d apps, %d MB of images, N=%d | bytes | p50 | max | MB/s at p50 |\n|---|---|---|---|---|\n", apps, mb, n)
	for _, sd := range sides {
		p50 := pct(sd.Times, 50)
		fmt.Printf("| %s | %d | %s | %s | %.0f |\n", sd.Name, bytes[sd.Name], ms(p50), ms(pct(sd.Times, 100)), float64(bytes[sd.Name])/1e6/p50.Seconds())
	}
	ratio := benchpaasd.Ratio(pct(sides[0].Times, 50), pct(sides[1].Times, 50))
	verdict := "met"
	if ratio > 1.5 {
		verdict = "MISSED"
	}
	fmt.Printf("ratio backup.Write/tar at p50: %.2fx (target at most 1.5x: %s)\n", ratio, verdict)
	fmt.Printf("ratio ssh backup:export/tar at p50: %.2fx (the SSH stream's encryption included)\n", benchpaasd.Ratio(pct(sides[2].Times, 50), pct(sides[1].Times, 50)))
	return nil
}
