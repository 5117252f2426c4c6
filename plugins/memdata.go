package plugins

import (
	"bytes"
	"sync"
)

// MemData is a Data kept in memory, for plugin tests.
type MemData struct {
	mu sync.Mutex
	m  map[string][]byte
}

var _ Data = (*MemData)(nil)

// NewMemData returns an empty MemData.
func NewMemData() *MemData { return &MemData{m: map[string][]byte{}} }

// Get implements Data.
func (d *MemData) Get(key string) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return bytes.Clone(d.m[key]), nil
}

// Update implements Data.
func (d *MemData) Update(key string, fn func(old []byte) ([]byte, error)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := fn(bytes.Clone(d.m[key]))
	if err != nil {
		return err
	}
	if v == nil {
		delete(d.m, key)
	} else {
		d.m[key] = bytes.Clone(v)
	}
	return nil
}

// List implements Data.
func (d *MemData) List() (map[string][]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string][]byte, len(d.m))
	for k, v := range d.m {
		out[k] = bytes.Clone(v)
	}
	return out, nil
}
