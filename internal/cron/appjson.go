// Package cron runs the cron tasks of app.json (Dokku's "cron" entries) as
// one-off tasks of each app's current release, on schedule, never two runs
// of a task at once, and keeps the output of their last runs.
package cron

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	robfig "github.com/robfig/cron/v3"

	"paas/internal/paas"
	"paas/scheduler"
)

// MaxTasks is how many cron tasks one app.json may declare.
const MaxTasks = 50

// ParseSchedule parses a schedule in cron syntax (five fields, or @daily,
// @hourly, @every 5m and friends), times in UTC. With seconds, a sixth,
// leading seconds field is allowed too (paasd serve --cron-seconds, for
// tests).
func ParseSchedule(spec string, seconds bool) (robfig.Schedule, error) {
	opts := robfig.Minute | robfig.Hour | robfig.Dom | robfig.Month | robfig.Dow | robfig.Descriptor
	if seconds {
		opts |= robfig.SecondOptional
	}
	if strings.HasPrefix(strings.TrimSpace(spec), "TZ=") || strings.HasPrefix(strings.TrimSpace(spec), "CRON_TZ=") {
		return nil, errors.New("a time zone is not supported: schedules are in UTC")
	}
	return robfig.NewParser(opts).Parse(spec)
}

// TaskID is the ID of a cron task: the same while its command and schedule
// stay the same, so that a suspension survives deploys.
func TaskID(command, schedule string) string {
	sum := sha256.Sum256([]byte(schedule + "\n" + command))
	return hex.EncodeToString(sum[:5])
}

// ReadAppJSON returns the cron tasks of the app.json in dir; nil without
// app.json or without "cron".
func ReadAppJSON(dir string, seconds bool) ([]paas.CronTask, error) {
	data, err := os.ReadFile(filepath.Join(dir, "app.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read app.json: %w", err)
	}
	return ParseAppJSON(data, seconds)
}

// ParseAppJSON parses and checks the "cron" entries of an app.json: a
// command (a command line, or a Procfile process type), a schedule, and
// Dokku's optional maintenance and concurrency_policy. An error names the
// entry.
func ParseAppJSON(data []byte, seconds bool) ([]paas.CronTask, error) {
	var doc struct {
		Cron []struct {
			Command           string `json:"command"`
			Schedule          string `json:"schedule"`
			Maintenance       *bool  `json:"maintenance"`
			ConcurrencyPolicy string `json:"concurrency_policy"`
		} `json:"cron"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("app.json: %w", err)
	}
	if len(doc.Cron) > MaxTasks {
		return nil, fmt.Errorf("app.json cron: %d tasks, at most %d", len(doc.Cron), MaxTasks)
	}
	var tasks []paas.CronTask
	seen := map[string]int{}
	for i, e := range doc.Cron {
		where := fmt.Sprintf("app.json cron[%d]", i)
		if e.Command != "" {
			where += fmt.Sprintf(" (%q)", e.Command)
		}
		if strings.TrimSpace(e.Command) == "" {
			return nil, fmt.Errorf("%s: command is required", where)
		}
		if err := paas.ValidateArg(e.Command); err != nil {
			return nil, fmt.Errorf("%s: command: %w", where, err)
		}
		if _, err := scheduler.SplitCommand(e.Command); err != nil {
			return nil, fmt.Errorf("%s: command: %w", where, err)
		}
		if strings.TrimSpace(e.Schedule) == "" {
			return nil, fmt.Errorf("%s: schedule is required (cron syntax such as \"0 3 * * *\", or @daily, @hourly...)", where)
		}
		if _, err := ParseSchedule(e.Schedule, seconds); err != nil {
			return nil, fmt.Errorf("%s: schedule %q: %w", where, e.Schedule, err)
		}
		switch e.ConcurrencyPolicy {
		case "", "forbid":
		default:
			return nil, fmt.Errorf("%s: concurrency_policy %q: paas never runs a cron task twice at once (forbid, the only policy)", where, e.ConcurrencyPolicy)
		}
		t := paas.CronTask{ID: TaskID(e.Command, e.Schedule), Command: e.Command, Schedule: e.Schedule, Maintenance: e.Maintenance != nil && *e.Maintenance}
		if j, dup := seen[t.ID]; dup {
			return nil, fmt.Errorf("%s: the same command and schedule as cron[%d]", where, j)
		}
		seen[t.ID] = i
		tasks = append(tasks, t)
	}
	return tasks, nil
}
