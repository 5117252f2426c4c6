package scheduler

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/swarm"

	"paas/internal/paas"
)

// LogOptions selects what Logs writes.
type LogOptions struct {
	Follow  bool   // keep writing new lines until ctx is cancelled
	Tail    int    // only the last Tail lines (of each process type when following); 0 for all
	Process string // only this process type ("web") or task ("web.1"); "" for all
	Quiet   bool   // the app's lines alone, without time and task (Dokku's logs --quiet)
}

// timeFormat is RFC 3339 with nanoseconds always padded, so lines align.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// logLine is one line an app wrote.
type logLine struct {
	at   time.Time
	task string // process.slot, e.g. "web.1"
	text string
}

func (l logLine) String() string {
	return fmt.Sprintf("%s app[%s]: %s\n", l.at.UTC().Format(timeFormat), l.task, l.text)
}

// format is the line as Logs writes it: with its time and task, or bare.
func (l logLine) format(quiet bool) string {
	if quiet {
		return l.text + "\n"
	}
	return l.String()
}

// Logs writes what app's processes wrote to w, one line each, prefixed like
// Dokku's "2026-11-22T10:00:00.000000000Z app[web.1]: ...". Without Follow
// it writes the lines of all process types in time order and returns; with
// Follow it writes lines as they come until ctx is cancelled, then returns
// nil. An app with no services gives paas.ErrNoRelease.
func (s *Swarm) Logs(ctx context.Context, app string, opts LogOptions, w io.Writer) error {
	svcs, err := s.appServices(ctx, app)
	if err != nil {
		return err
	}
	if len(svcs) == 0 {
		return fmt.Errorf("logs of %s: %w", app, paas.ErrNoRelease)
	}
	process, slotFilter := opts.Process, 0
	if name, slot, ok := strings.Cut(process, "."); ok {
		n, err := strconv.Atoi(slot)
		if err != nil || n < 1 {
			return fmt.Errorf("logs of %s: invalid process %q: want a process type or TYPE.NUMBER", app, opts.Process)
		}
		process, slotFilter = name, n
	}
	if process != "" {
		svcs = slices.DeleteFunc(svcs, func(svc swarm.Service) bool { return svc.Spec.Labels[paas.LabelProcess] != process })
		if len(svcs) == 0 {
			return fmt.Errorf("logs of %s: no process type %q", app, process)
		}
	}

	lo := container.LogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true, Details: true, Follow: opts.Follow, Tail: "all"}
	if opts.Tail > 0 {
		lo.Tail = strconv.Itoa(opts.Tail)
	}
	var (
		mu        sync.Mutex
		collected []logLine
		wg        sync.WaitGroup
		emit      = func(l logLine) error {
			mu.Lock()
			defer mu.Unlock()
			if !opts.Follow {
				collected = append(collected, l)
				return nil
			}
			if _, err := io.WriteString(w, l.format(opts.Quiet)); err != nil {
				return err
			}
			flushWriter(w)
			return nil
		}
	)
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var firstErr error
	seen := map[string]bool{}
	follow := func(svc swarm.Service, lo container.LogsOptions) {
		seen[svc.ID] = true
		names := &slotNames{s: s, serviceID: svc.ID, process: svc.Spec.Labels[paas.LabelProcess]}
		wg.Go(func() {
			err := s.serviceLogs(ctx, svc.ID, lo, names, slotFilter, emit)
			if err == nil || opts.Follow && isNotFound(err) {
				return // a followed service was removed: a rollout replaced it
			}
			mu.Lock()
			if firstErr == nil && ctx.Err() == nil {
				firstErr = err
			}
			mu.Unlock()
			cancel() // a broken stream ends them all
		})
	}
	for _, svc := range svcs {
		follow(svc, lo)
	}
	if opts.Follow {
		// Rollouts replace services: follow the new ones from their start.
		fresh := lo
		fresh.Tail = "all"
		wg.Go(func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				now, err := s.appServices(ctx, app)
				if err != nil {
					continue // the next tick tries again
				}
				for _, svc := range now {
					if !seen[svc.ID] && (process == "" || svc.Spec.Labels[paas.LabelProcess] == process) {
						follow(svc, fresh)
					}
				}
			}
		})
	}
	wg.Wait()
	if parent.Err() != nil {
		if opts.Follow {
			return nil // following ends when the caller is done
		}
		return parent.Err()
	}
	if firstErr != nil {
		return fmt.Errorf("logs of %s: %w", app, firstErr)
	}
	if opts.Follow {
		return nil
	}
	if !opts.Quiet {
		collected = append(collected, s.killLines(ctx, svcs, slotFilter)...)
	}
	slices.SortStableFunc(collected, func(a, b logLine) int { return a.at.Compare(b.at) })
	if opts.Tail > 0 && len(collected) > opts.Tail {
		collected = collected[len(collected)-opts.Tail:]
	}
	bw := bufio.NewWriter(w)
	for _, l := range collected {
		if _, err := bw.WriteString(l.format(opts.Quiet)); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	flushWriter(w)
	return nil
}

// serviceLogs streams one service's logs into emit.
func (s *Swarm) serviceLogs(ctx context.Context, serviceID string, lo container.LogsOptions, names *slotNames, slot int, emit func(logLine) error) error {
	rc, err := s.cli.ServiceLogs(ctx, serviceID, lo)
	if err != nil {
		return fmt.Errorf("read logs of service %s: %w", serviceID, err)
	}
	defer rc.Close()
	stop := context.AfterFunc(ctx, func() { rc.Close() })
	defer stop()
	return readFrames(rc, func(stream byte, payload []byte) error {
		if stream != 1 && stream != 2 {
			s.log.Warn("service logs", "service", serviceID, "err", strings.TrimSpace(string(payload)))
			return nil
		}
		for _, raw := range bytes.Split(bytes.TrimRight(payload, "\n"), []byte("\n")) {
			l, taskID, ok := parseLogLine(string(raw))
			if !ok {
				continue
			}
			name, taskSlot := names.lookup(ctx, taskID)
			if slot != 0 && taskSlot != slot {
				continue
			}
			l.task = name
			if err := emit(l); err != nil {
				return err
			}
		}
		return nil
	})
}

// readFrames reads a stream multiplexed by the daemon (stdcopy framing: one
// byte stream id, three zero bytes, a big-endian uint32 length, the payload)
// and calls fn for each frame. Each frame is one log message.
func readFrames(r io.Reader, fn func(stream byte, payload []byte) error) error {
	br := bufio.NewReader(r)
	var hdr [8]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		n := binary.BigEndian.Uint32(hdr[4:])
		if n > 16<<20 {
			return fmt.Errorf("log frame of %d bytes", n)
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			return err
		}
		if err := fn(hdr[0], buf); err != nil {
			return err
		}
	}
}

// parseLogLine splits "TIMESTAMP DETAILS TEXT", where DETAILS are
// comma-separated, query-escaped key=value pairs, and returns the line and
// the task that wrote it.
func parseLogLine(raw string) (logLine, string, bool) {
	ts, rest, ok := strings.Cut(raw, " ")
	if !ok {
		return logLine{}, "", false
	}
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return logLine{}, "", false
	}
	details, text, _ := strings.Cut(rest, " ")
	var taskID string
	for _, kv := range strings.Split(details, ",") {
		k, v, _ := strings.Cut(kv, "=")
		if k == "com.docker.swarm.task.id" {
			taskID, _ = url.QueryUnescape(v)
		}
	}
	return logLine{at: at, text: strings.TrimRight(text, "\r")}, taskID, true
}

// slotNames maps a service's task IDs to "process.slot", listing the
// service's tasks again when a task it does not know shows up.
type slotNames struct {
	s         *Swarm
	serviceID string
	process   string

	mu       sync.Mutex
	slots    map[string]int
	listedAt time.Time
}

func (n *slotNames) lookup(ctx context.Context, taskID string) (string, int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	slot, ok := n.slots[taskID]
	if !ok && time.Since(n.listedAt) > time.Second {
		n.listedAt = time.Now()
		if tasks, err := n.s.tasks(ctx, n.serviceID); err == nil {
			n.slots = make(map[string]int, len(tasks))
			for _, t := range tasks {
				n.slots[t.ID] = t.Slot
			}
			slot, ok = n.slots[taskID]
		}
	}
	if !ok || slot == 0 {
		return n.process, slot
	}
	return fmt.Sprintf("%s.%d", n.process, slot), slot
}

func flushWriter(w io.Writer) {
	if f, ok := w.(interface{ Flush() error }); ok {
		_ = f.Flush()
	} else if f, ok := w.(interface{ Flush() }); ok {
		f.Flush()
	}
}
