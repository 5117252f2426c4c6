package commands

import (
	"context"
	"fmt"
	"strings"
)

func (b *Builds) gitCommands() []*Command {
	return []*Command{
		{Name: "git:from-image", Args: "APP IMAGE", Help: "Deploy a prebuilt image from any registry (see registry:login)", App: true, MinArgs: 1, Run: b.gitFromImage},
	}
}

func (b *Builds) gitFromImage(ctx context.Context, c *Call) error {
	image := c.Args[0]
	if image == "" || strings.ContainsAny(image, " \t\n\\") || strings.HasPrefix(image, "-") {
		return fmt.Errorf("invalid image reference %q", sanitize(image))
	}
	return b.Images.DeployImage(ctx, c.App.Name, c.ID, image, c.Out)
}
