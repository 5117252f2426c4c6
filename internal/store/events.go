package store

import (
	"time"

	bolt "go.etcd.io/bbolt"

	"paas/internal/paas"
)

var bucketEvents = []byte("events") // id -> Event

// MaxEvents is how many audit events the store keeps; older ones are dropped.
const MaxEvents = 100000

// AddEvent appends e to the audit log and assigns its ID.
func (s *Store) AddEvent(e *paas.Event) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketEvents)
		if err != nil {
			return err
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		e.ID = int(seq)
		if e.Time.IsZero() {
			e.Time = time.Now().UTC()
		}
		if e.ID > MaxEvents {
			if err := b.Delete(itob(e.ID - MaxEvents)); err != nil {
				return err
			}
		}
		return s.put(b, itob(e.ID), e)
	})
}

// Events returns the events with an ID above after that keep accepts, oldest
// first, at most limit of the newest of them (0: no limit).
func (s *Store) Events(after, limit int, keep func(*paas.Event) bool) ([]*paas.Event, error) {
	var out []*paas.Event
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			e := new(paas.Event)
			if err := s.decode(v, e); err != nil {
				return err
			}
			if e.ID <= after {
				break
			}
			if keep == nil || keep(e) {
				out = append(out, e)
				if limit > 0 && len(out) >= limit {
					break
				}
			}
		}
		return nil
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}
