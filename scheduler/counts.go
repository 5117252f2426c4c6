package scheduler

import (
	"context"
	"sync"
	"time"
)

// CountsTTL is how long Counts may answer from its last list of the
// services when nothing was changed through this scheduler since.
const CountsTTL = 2 * time.Second

// counts keeps Counts' last answer. Every view of the dashboard's app list
// asks for the task counts; Docker's service list (with the services'
// status) cost 2 ms at the median and 47 ms at p99 on a busy 2-core host,
// and grows with the number of services, so page views close together
// share one list. A change made here always shows at once: an operation
// on the apps' services (Deploy, Stop, Retire, Remove, RemoveAll) counts
// as a change from its start to its end, which takes in its wait for the
// tasks to run; while one runs Counts always asks Docker, and an answer
// is never kept across one. What changes without this scheduler (a task
// that dies, a node that is lost or drained, Swarm rescheduling) shows
// within CountsTTL, about as late as Docker's own service status follows
// its tasks.
type counts struct {
	mu       sync.Mutex
	changing int    // operations running
	gen      uint64 // bumped when one starts and when one ends
	kept     map[string][]ProcessCount
	keptGen  uint64
	keptAt   time.Time // when the kept list was asked for
}

// changing marks an operation on the apps' services until the returned
// function is called.
func (s *Swarm) changing() (done func()) {
	c := &s.counts
	c.mu.Lock()
	c.changing++
	c.gen++
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		c.changing--
		c.gen++
		c.mu.Unlock()
	}
}

// Counts returns the task counts of every app's process types, by app,
// from one list of the installation's services (listCounts), or the list
// of at most CountsTTL ago when nothing was changed here since (counts).
// The answer is shared: callers only read it.
func (s *Swarm) Counts(ctx context.Context) (map[string][]ProcessCount, error) {
	c := &s.counts
	c.mu.Lock()
	if c.kept != nil && c.changing == 0 && c.keptGen == c.gen && time.Since(c.keptAt) < CountsTTL {
		kept := c.kept
		c.mu.Unlock()
		return kept, nil
	}
	gen := c.gen
	c.mu.Unlock()
	asked := time.Now()
	out, err := s.listCounts(ctx)
	if err != nil {
		return nil, err
	}
	// Kept as of gen: a change that started since never lets it be used.
	c.mu.Lock()
	c.kept, c.keptGen, c.keptAt = out, gen, asked
	c.mu.Unlock()
	return out, nil
}
