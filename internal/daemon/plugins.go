package daemon

import (
	"log/slog"
	"path/filepath"

	"github.com/docker/docker/client"

	"paas/internal/commands"
	"paas/internal/store"
	"paas/plugins"
	"paas/plugins/postgres"
)

var _ plugins.Data = (*store.PluginData)(nil)

// newPlugins returns the plugin registry: executables under the plugins dir,
// with their enabled state in the store. Go plugins are added by
// registerPlugins once the pipeline they act through exists.
func newPlugins(cfg Config, dataDir string, st *store.Store, log *slog.Logger) *plugins.Registry {
	log = log.With("component", "plugins")
	dir := plugins.NewDir(cfg.PluginsDir, 0, log).WithEnv(
		"PAAS_NAME="+cfg.Name,
		"PAAS_DOMAIN="+cfg.Domain,
		"PAAS_DATA_DIR="+dataDir,
	)
	return plugins.NewRegistry(dir, st.Plugin("paas.plugins"), log)
}

// registerPlugins adds the Go plugins compiled into paasd: Postgres, and
// built already, the parts of paasd that are plugins too (cron). A company's
// own Go plugin is added here the same way.
func registerPlugins(reg *plugins.Registry, cfg Config, dataDir string, st *store.Store, docker *client.Client, pipeline commands.Pipeline, network string, log *slog.Logger, built ...plugins.Plugin) error {
	apps := &commands.PluginApps{Store: st, Pipeline: pipeline}
	if err := reg.Register(built...); err != nil {
		return err
	}
	return reg.Register(
		postgres.New(postgres.Options{
			Docker:    docker,
			Name:      cfg.Name,
			Network:   network,
			Image:     cfg.PostgresImage,
			BackupDir: filepath.Join(dataDir, "backups", "postgres"),
			Apps:      apps,
			Data:      st.Plugin("postgres"),
			Log:       log,
		}),
	)
}

// pluginCommands are the commands about plugins and those of Go plugins,
// for the dispatcher; execPluginCommands are those of executable plugins,
// read at each use.
func pluginCommands(reg *plugins.Registry) []*commands.Command {
	return append(commands.PluginCommands(reg), commands.FromPlugins(reg.GoCommands())...)
}

func execPluginCommands(reg *plugins.Registry) func() []*commands.Command {
	return func() []*commands.Command { return commands.FromPlugins(reg.ExecCommands()) }
}
