package paas

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// ResourceDefault is the process type key of the resources that apply to
// every process type without its own (Dokku's _default_).
const ResourceDefault = "_default_"

// Bounds of a resource value. Docker refuses a container whose memory
// limit is under 6 MB (the least a task needs to start) and a CPU limit
// under 0.01.
const (
	MinMemoryBytes = 6 << 20
	MinNanoCPUs    = 10_000_000
	maxMemoryBytes = 1 << 50 // 1 PB: anything larger is a typo
	maxNanoCPUs    = 1024 * 1_000_000_000
)

// ErrInvalidResource is wrapped by every resource parsing and validation error.
var ErrInvalidResource = errors.New("invalid resource")

// Resources are amounts of CPU and memory; zero fields are unset.
type Resources struct {
	NanoCPUs    int64 `json:"nano_cpus,omitempty"`    // 1e9 is one CPU
	MemoryBytes int64 `json:"memory_bytes,omitempty"` // bytes
}

// IsZero reports whether no field is set.
func (r Resources) IsZero() bool { return r.NanoCPUs == 0 && r.MemoryBytes == 0 }

// over returns r with its unset fields taken from base.
func (r Resources) over(base Resources) Resources {
	if r.NanoCPUs == 0 {
		r.NanoCPUs = base.NanoCPUs
	}
	if r.MemoryBytes == 0 {
		r.MemoryBytes = base.MemoryBytes
	}
	return r
}

// ResourceSettings are the limits and reservations of an app (or of the
// installation, the default of every app) by process type; ResourceDefault
// holds those of every process type without its own (resource:limit,
// resource:reserve).
type ResourceSettings struct {
	Limits       map[string]Resources `json:"limits,omitempty"`
	Reservations map[string]Resources `json:"reservations,omitempty"`
}

// IsZero reports whether nothing is set.
func (s ResourceSettings) IsZero() bool { return len(s.Limits) == 0 && len(s.Reservations) == 0 }

// Clone returns a deep copy of s.
func (s ResourceSettings) Clone() ResourceSettings {
	return ResourceSettings{Limits: maps.Clone(s.Limits), Reservations: maps.Clone(s.Reservations)}
}

// ProcessTypes returns the process types s names (ResourceDefault among
// them when set), sorted.
func (s ResourceSettings) ProcessTypes() []string {
	set := map[string]bool{}
	for k := range s.Limits {
		set[k] = true
	}
	for k := range s.Reservations {
		set[k] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// ProcessResources are what one process type's tasks get: a limit they
// cannot go past and a reservation the scheduler keeps free for them.
type ProcessResources struct {
	Limit   Resources `json:"limit"`
	Reserve Resources `json:"reserve"`
}

// IsZero reports whether nothing is limited or reserved.
func (p ProcessResources) IsZero() bool { return p.Limit.IsZero() && p.Reserve.IsZero() }

// EffectiveResources returns what process gets from an app's settings over
// the installation's, field by field: the app's for the process type, the
// app's default, the installation's for the process type, the
// installation's default.
func EffectiveResources(app, global ResourceSettings, process string) ProcessResources {
	pick := func(app, global map[string]Resources) Resources {
		r := app[process].over(app[ResourceDefault])
		return r.over(global[process].over(global[ResourceDefault]))
	}
	return ProcessResources{Limit: pick(app.Limits, global.Limits), Reserve: pick(app.Reservations, global.Reservations)}
}

// Check refuses a reservation larger than the limit of the same resource.
func (p ProcessResources) Check(process string) error {
	l, r := p.Limit, p.Reserve
	if l.MemoryBytes > 0 && r.MemoryBytes > l.MemoryBytes {
		return fmt.Errorf("%w: %s would reserve %s of memory, more than its limit of %s", ErrInvalidResource, process, FormatMemory(r.MemoryBytes), FormatMemory(l.MemoryBytes))
	}
	if l.NanoCPUs > 0 && r.NanoCPUs > l.NanoCPUs {
		return fmt.Errorf("%w: %s would reserve %s CPU, more than its limit of %s", ErrInvalidResource, process, FormatCPU(r.NanoCPUs), FormatCPU(l.NanoCPUs))
	}
	return nil
}

// CheckResources checks, for every process type that app or global names
// and for extra ones (a release's process types), that what it would get
// reserves no more than its limit.
func CheckResources(app, global ResourceSettings, extra ...string) error {
	names := slices.Concat(app.ProcessTypes(), global.ProcessTypes(), extra)
	slices.Sort(names)
	for _, name := range slices.Compact(names) {
		if err := EffectiveResources(app, global, name).Check(ProcessTypeName(name)); err != nil {
			return err
		}
	}
	return nil
}

// ProcessTypeName names a resource key in a message: "every process type"
// for ResourceDefault.
func ProcessTypeName(key string) string {
	if key == ResourceDefault {
		return "every process type"
	}
	return "process type " + key
}

var cpuRe = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)

// ParseCPU reads a number of CPUs ("1", "0.5", "2.25") as nano CPUs, as
// docker's --cpus: at least 0.01, at most 1024, at most 9 decimals.
func ParseCPU(s string) (int64, error) {
	if !cpuRe.MatchString(s) {
		return 0, fmt.Errorf("%w: --cpu %q: give a number of CPUs greater than zero, such as 1 or 0.5", ErrInvalidResource, s)
	}
	whole, frac, _ := strings.Cut(s, ".")
	if len(frac) > 9 {
		return 0, fmt.Errorf("%w: --cpu %q: at most 9 decimals", ErrInvalidResource, s)
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > maxNanoCPUs/1e9 {
		return 0, fmt.Errorf("%w: --cpu %q: at most %d CPUs", ErrInvalidResource, s, maxNanoCPUs/1_000_000_000)
	}
	f, _ := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
	n := w*1_000_000_000 + f
	switch {
	case n <= 0:
		return 0, fmt.Errorf("%w: --cpu %q: give a number of CPUs greater than zero (resource:limit-clear removes a limit)", ErrInvalidResource, s)
	case n < MinNanoCPUs:
		return 0, fmt.Errorf("%w: --cpu %q: at least 0.01 CPU", ErrInvalidResource, s)
	case n > maxNanoCPUs:
		return 0, fmt.Errorf("%w: --cpu %q: at most %d CPUs", ErrInvalidResource, s, maxNanoCPUs/1_000_000_000)
	}
	return n, nil
}

var memoryRe = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)$`)

// memoryUnits are the units ParseMemory takes, as docker's --memory
// (binary multiples: 1k is 1024 bytes).
var memoryUnits = map[string]int64{
	"b": 1,
	"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
	"t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
}

// ParseMemory reads an amount of memory: a number with a unit of b, k, m,
// g or t (binary multiples, as docker's --memory: 512m is 512 MiB), or a
// bare number of megabytes (Dokku's default unit). It is at least
// MinMemoryBytes.
func ParseMemory(s string) (int64, error) {
	m := memoryRe.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%w: --memory %q: give an amount such as 512m or 1g (units b, k, m, g, t)", ErrInvalidResource, s)
	}
	unit := strings.ToLower(m[2])
	mult, ok := memoryUnits[unit]
	if unit == "" {
		mult, ok = 1<<20, true
	}
	if !ok {
		return 0, fmt.Errorf("%w: --memory %q: unknown unit %q (use b, k, m, g or t)", ErrInvalidResource, s, m[2])
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil || v*float64(mult) > maxMemoryBytes {
		return 0, fmt.Errorf("%w: --memory %q is too large", ErrInvalidResource, s)
	}
	n := int64(math.Round(v * float64(mult)))
	switch {
	case n <= 0:
		return 0, fmt.Errorf("%w: --memory %q: give an amount greater than zero (resource:limit-clear removes a limit)", ErrInvalidResource, s)
	case n < MinMemoryBytes:
		return 0, fmt.Errorf("%w: --memory %q is less than the %s a task needs to start", ErrInvalidResource, s, FormatMemory(MinMemoryBytes))
	}
	return n, nil
}

// FormatCPU shows nano CPUs as a number of CPUs: "1", "0.5".
func FormatCPU(n int64) string {
	return strconv.FormatFloat(float64(n)/1e9, 'f', -1, 64)
}

// FormatMemory shows bytes in the largest binary unit that divides them,
// as people write them for Docker: "512 MB" is 512 MiB.
func FormatMemory(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d %s", n/u.size, u.name)
		}
	}
	if n >= 1<<20 {
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MB"
	}
	return fmt.Sprintf("%d B", n)
}
