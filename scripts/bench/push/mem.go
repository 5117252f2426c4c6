package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// memPeak is what the sampler saw of a server's process tree, in KB.
type memPeak struct {
	gitHWM int64 // largest VmHWM of a git process under the server
	tree   int64 // largest sum of VmRSS of the server and all its descendants
}

func (m *memPeak) merge(o memPeak) {
	m.gitHWM = max(m.gitHWM, o.gitHWM)
	m.tree = max(m.tree, o.tree)
}

// sampler polls /proc every 20 ms while a push runs.
type sampler struct {
	root  int
	stopc chan struct{}
	done  chan memPeak
}

const sampleEvery = 20 * time.Millisecond

func startSampler(root int) *sampler {
	s := &sampler{root: root, stopc: make(chan struct{}), done: make(chan memPeak, 1)}
	if root == 0 {
		s.done <- memPeak{}
		return s
	}
	go func() {
		var peak memPeak
		defer func() {
			recover() // a vanished process is no reason to crash the benchmark
			s.done <- peak
		}()
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for {
			peak.merge(sampleTree(s.root))
			select {
			case <-s.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) stop() memPeak {
	close(s.stopc)
	return <-s.done
}

var pageKB = int64(os.Getpagesize() / 1024)

type procStat struct {
	ppid  int
	comm  string
	rssKB int64
	cpu   time.Duration // user+system, its own and that of its reaped children
}

// clockTick is USER_HZ, 100 on every Linux architecture Go runs on.
const clockTick = 10 * time.Millisecond

// readStat parses /proc/PID/stat: "pid (comm) state ppid ... rss(24th) ...".
func readStat(pid int) (procStat, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return procStat{}, false
	}
	f := strings.Fields(string(data[end+1:]))
	// f[0] is field 3 (state), so field k is f[k-3].
	if len(f) < 22 {
		return procStat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	rss, _ := strconv.ParseInt(f[21], 10, 64)
	var ticks int64
	for _, k := range []int{14, 15, 16, 17} { // utime stime cutime cstime
		n, _ := strconv.ParseInt(f[k-3], 10, 64)
		ticks += n
	}
	return procStat{ppid: ppid, comm: string(data[open+1 : end]), rssKB: rss * pageKB, cpu: time.Duration(ticks) * clockTick}, true
}

// sampleTree measures root and every process descending from it.
func sampleTree(root int) memPeak {
	d, err := os.Open("/proc")
	if err != nil {
		return memPeak{}
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	stats := map[int]procStat{}
	children := map[int][]int{}
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		if st, ok := readStat(pid); ok {
			stats[pid] = st
			children[st.ppid] = append(children[st.ppid], pid)
		}
	}
	var m memPeak
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		st, ok := stats[pid]
		if !ok {
			continue
		}
		m.tree += st.rssKB
		if pid != root && strings.HasPrefix(st.comm, "git") {
			m.gitHWM = max(m.gitHWM, readStatusKB(pid, "VmHWM"))
		}
		queue = append(queue, children[pid]...)
	}
	return m
}

// settle waits until root has no child processes left (sshd reaps a
// connection's process a little after the client is done) and returns root's
// CPU time, which then includes all the push's server processes.
func settle(root int, limit time.Duration) time.Duration {
	deadline := time.Now().Add(limit)
	for {
		kids := false
		if d, err := os.Open("/proc"); err == nil {
			names, _ := d.Readdirnames(-1)
			d.Close()
			for _, n := range names {
				if pid, err := strconv.Atoi(n); err == nil {
					if st, ok := readStat(pid); ok && st.ppid == root {
						kids = true
						break
					}
				}
			}
		}
		if !kids || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	st, _ := readStat(root)
	return st.cpu
}

// readStatusKB reads one "Name:   N kB" line of /proc/PID/status (0: unknown).
func readStatusKB(pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// resetHWM resets a process's peak RSS (VmHWM) to its current RSS.
func resetHWM(pid int) {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		fmt.Fprintf(os.Stderr, "bench: warning: cannot reset paasd's peak RSS (%v): it includes startup\n", err)
	}
}
