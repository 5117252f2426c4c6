package plugins_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// A plugin kept in a module of its own builds against this package alone:
// every type the plugin API shows is one it can name (Go forbids it to
// import paas/internal/...).
func TestPluginOutsideTheModule(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"go.mod": "module example.com/acme\n\ngo 1.26\n\nrequire paas v0.0.0\n\nreplace paas => " + root + "\n",
		"go.sum": string(sum),
		"acme.go": `package acme

import (
	"context"
	"errors"
	"fmt"
	"io"

	"paas/plugins"
)

// Plugin adds acme:owner and says who pushed on post-deploy.
type Plugin struct{ Apps plugins.Apps }

var (
	_ plugins.Commander = Plugin{}
	_ plugins.Hooker    = Plugin{}
)

func (Plugin) Name() string        { return "acme" }
func (Plugin) Description() string { return "an example kept outside paas" }

func (p Plugin) Commands() []plugins.Command {
	return []plugins.Command{{Name: "acme:owner", Args: "APP", App: true, Run: func(ctx context.Context, c *plugins.Call) error {
		var app *plugins.App = c.App
		var who plugins.Identity = c.ID
		if _, err := p.Apps.App(who, app.Name); errors.Is(err, plugins.ErrAppNotFound) {
			return err
		}
		_, err := fmt.Fprintln(c.Out, app.Owner, who.Name, who.Admin, who.Groups)
		return err
	}}}
}

func (Plugin) Hooks() map[string]plugins.HookFunc {
	return map[string]plugins.HookFunc{plugins.TriggerPostDeploy: func(ctx context.Context, ev plugins.Event) error {
		_, err := io.WriteString(ev.Out, "deployed by "+ev.User.Name+"\n")
		return err
	}}
}
`,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-mod=mod", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build of a plugin in another module: %v\n%s", err, out)
	}
}
