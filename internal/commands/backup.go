package commands

import (
	"context"
	"errors"
	"fmt"
	"io"

	"paas/internal/backup"
	"paas/internal/output"
)

// Backups writes the installation's backup (the daemon's data dir).
type Backups interface {
	// Export writes the backup to w, the embedded registry's images
	// included when images is set.
	Export(ctx context.Context, w io.Writer, images bool) (backup.Manifest, backup.Summary, error)
}

// BackupCommands is backup:export: the platform's backup, for `paasd
// restore` on a new machine.
func BackupCommands(b Backups) []*Command {
	return []*Command{
		{Name: "backup:export", Args: "[--no-images]", Admin: true, Flags: map[string]bool{"--no-images": false},
			Help: "Write the installation's backup, a tar, to standard output (administrators)",
			Details: "ssh paas backup:export > paas-backup.tar\n" +
				"It holds the records (apps, releases, config, builds, keys, tokens, audit log), the apps'\n" +
				"repositories, certificates, and the embedded registry's images (not with --no-images).\n" +
				"The config key is not in it: keep DATA_DIR/config.key apart, as restoring needs it.\n" +
				"Restore on a new machine with: paasd restore --data-dir DIR paas-backup.tar",
			Run: func(ctx context.Context, c *Call) error {
				if len(c.Args) > 0 {
					return errors.New("backup:export takes no arguments\n Usage: backup:export [--no-images]")
				}
				if t, ok := c.Stdin.(terminal); ok {
					if _, tty := t.Terminal(); tty {
						return errors.New("backup:export writes a tar to standard output: redirect it to a file, without -t (ssh paas backup:export > paas-backup.tar)")
					}
				}
				images := !c.Has("--no-images")
				output.Step(c.Err, "Writing the backup (images: %t)", images)
				m, sum, err := b.Export(ctx, c.Out, images)
				if err != nil {
					return fmt.Errorf("backup: %w", err)
				}
				output.Step(c.Err, "Backup of %s written: %d apps, %d files, %.1f MB; keep the config key apart", m.Installation, m.Apps, sum.Files, float64(sum.Bytes)/1e6)
				return nil
			}},
	}
}
