package commands

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"paas/internal/output"
	"paas/internal/paas"
	"paas/scheduler"
)

// Networks are the installation's networks that network:create makes
// (scheduler.Swarm).
type Networks interface {
	CreateUserNetwork(ctx context.Context, name, owner string) error
	UserNetwork(ctx context.Context, name string) (scheduler.NetworkInfo, error)
	UserNetworks(ctx context.Context) ([]scheduler.NetworkInfo, error)
	RemoveUserNetwork(ctx context.Context, name string) error
}

// Network serves the network:* commands.
type Network struct {
	Apps     StorageApps
	Networks Networks
	// Pipeline rolls an app out again with its new networks.
	Pipeline StoragePipeline
}

// networkKeys are network:set's properties, Dokku's names.
var networkKeys = []string{"attach-post-create", "attach-post-deploy", "initial-network"}

// NetworkCommands returns the network:* commands, Dokku's names and flags.
func NetworkCommands(n *Network) []*Command {
	reportFlags := map[string]bool{"--format": true}
	for _, k := range append([]string{"own", "linked"}, networkKeys...) {
		reportFlags["--network-"+k] = false
	}
	return []*Command{
		{Name: "network:create", Args: "NETWORK", Help: "Create a network that apps may be attached to (network:set); it is yours", MinArgs: 1, Run: n.create,
			Details: "An attachable overlay network named NETWORK, as Docker names it. A name another installation or anything else holds is refused."},
		{Name: "network:destroy", Args: "NETWORK [--force]", Help: "Destroy a network no app is attached to", MinArgs: 1, Flags: map[string]bool{"--force": false}, Run: n.destroy},
		{Name: "network:exists", Args: "NETWORK", Help: "Exit 0 when the network exists (network:create), 1 otherwise", MinArgs: 1, Run: n.exists},
		{Name: "network:info", Args: "NETWORK [--format stdout|json]", Help: "Show a network made with network:create", MinArgs: 1, Flags: formatFlag, Run: n.info},
		{Name: "network:list", Args: "[--format stdout|json]", Help: "List the networks made with network:create", Flags: formatFlag, Run: n.list},
		{Name: "network:report", Args: "[APP] [--format stdout|json] [--network-FLAG]", Help: "Show the networks of one app or of every app", NamesApp: true, Flags: reportFlags, Run: n.report},
		{Name: "network:set", Args: "APP attach-post-create|attach-post-deploy|initial-network [NETWORK...]", Help: "Attach the app to networks (no NETWORK: clear the property)", App: true, MinArgs: 1, Run: n.set,
			Details: `Every property attaches all of the app's tasks (and run, run:detached and cron tasks) to
the networks, besides the app's own network: the app reaches what is on them, and they reach
the app. A deployed app is rolled out again with the change, without downtime. Only the
network's owner (who created it) or an administrator may attach an app to it.`},
	}
}

func (n *Network) create(ctx context.Context, c *Call) error {
	if len(c.Args) > 1 {
		return fmt.Errorf("Unexpected argument(s): %s", sanitize(strings.Join(c.Args[1:], " ")))
	}
	name := c.Args[0]
	if err := paas.ValidateNetworkName(name); err != nil {
		return refuse("%v", err)
	}
	output.Step(c.Out, "Creating network %s", name)
	return n.Networks.CreateUserNetwork(ctx, name, c.ID.Name)
}

// owned returns network name when the caller may attach apps to it or
// destroy it: an administrator, or who created it.
func (n *Network) owned(ctx context.Context, c *Call, name string) (scheduler.NetworkInfo, error) {
	if err := paas.ValidateNetworkName(name); err != nil {
		return scheduler.NetworkInfo{}, refuse("%v", err)
	}
	info, err := n.Networks.UserNetwork(ctx, name)
	if err != nil {
		return info, err
	}
	if !c.ID.Admin && info.Owner != c.ID.Name {
		return info, fmt.Errorf("network %s belongs to %s: only they or an administrator may use it", name, info.Owner)
	}
	return info, nil
}

// usedBy lists the apps set to join network.
func (n *Network) usedBy(network string) ([]string, error) {
	apps, err := n.Apps.Apps()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, a := range apps {
		s := a.Network
		if s.InitialNetwork == network || slices.Contains(s.AttachPostCreate, network) || slices.Contains(s.AttachPostDeploy, network) {
			names = append(names, a.Name)
		}
	}
	return names, nil
}

func (n *Network) destroy(ctx context.Context, c *Call) error {
	if len(c.Args) > 1 {
		return fmt.Errorf("Unexpected argument(s): %s", sanitize(strings.Join(c.Args[1:], " ")))
	}
	name := c.Args[0]
	if _, err := n.owned(ctx, c, name); err != nil {
		return err
	}
	users, err := n.usedBy(name)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return fmt.Errorf("network %s is attached to %s: clear it first (network:set %s attach-post-deploy)", name, strings.Join(users, ", "), users[0])
	}
	if !c.Has("--force") {
		return fmt.Errorf("destroying network %s cannot be undone\nrun `network:destroy %s --force` to confirm", name, name)
	}
	output.Step(c.Out, "Destroying network %s", name)
	return n.Networks.RemoveUserNetwork(ctx, name)
}

func (n *Network) exists(ctx context.Context, c *Call) error {
	if _, err := n.Networks.UserNetwork(ctx, c.Args[0]); err != nil {
		return &exitError{code: ExitError, msg: fmt.Sprintf("Network %s does not exist", sanitize(c.Args[0]))}
	}
	output.Step(c.Out, "Network %s exists", c.Args[0])
	return nil
}

type networkJSON struct {
	Name      string   `json:"name"`
	ID        string   `json:"id"`
	Driver    string   `json:"driver"`
	Scope     string   `json:"scope"`
	Internal  bool     `json:"internal"`
	Owner     string   `json:"owner"`
	Subnets   []string `json:"subnets"`
	CreatedAt string   `json:"created_at"`
}

func networkOut(i scheduler.NetworkInfo) networkJSON {
	return networkJSON{Name: i.Name, ID: i.ID, Driver: i.Driver, Scope: i.Scope, Internal: i.Internal, Owner: i.Owner, Subnets: append([]string{}, i.Subnets...), CreatedAt: i.Created}
}

func (n *Network) info(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	i, err := n.Networks.UserNetwork(ctx, c.Args[0])
	if err != nil {
		return err
	}
	if asJSON {
		return output.JSON(c.Out, networkOut(i))
	}
	users, err := n.usedBy(i.Name)
	if err != nil {
		return err
	}
	return report(c, false, i.Name+" network information", []kv{
		{"Network id", i.ID},
		{"Network driver", i.Driver},
		{"Network scope", i.Scope},
		{"Network owner", i.Owner},
		{"Network subnets", strings.Join(i.Subnets, " ")},
		{"Network created at", i.Created},
		{"Network apps", strings.Join(users, " ")},
	})
}

func (n *Network) list(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	nets, err := n.Networks.UserNetworks(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		out := make([]networkJSON, 0, len(nets))
		for _, i := range nets {
			out = append(out, networkOut(i))
		}
		return output.JSON(c.Out, out)
	}
	output.Header(c.Out, "Networks")
	for _, i := range nets {
		fmt.Fprintln(c.Out, i.Name)
	}
	return nil
}

func (n *Network) set(ctx context.Context, c *Call) error {
	key, values := c.Args[0], c.Args[1:]
	if !slices.Contains(networkKeys, key) {
		return refuse("unknown property %s: use %s", sanitize(key), strings.Join(networkKeys, ", "))
	}
	if key == "initial-network" && len(values) > 1 {
		return refuse("initial-network takes one network")
	}
	for _, v := range values {
		if _, err := n.owned(ctx, c, v); err != nil {
			return err
		}
	}
	values = slices.Compact(slices.Clone(values))
	change := func(a *paas.App) error {
		switch key {
		case "attach-post-create":
			a.Network.AttachPostCreate = values
		case "attach-post-deploy":
			a.Network.AttachPostDeploy = values
		case "initial-network":
			a.Network.InitialNetwork = strings.Join(values, "")
		}
		return nil
	}
	if len(values) == 0 {
		output.Step(c.Out, "Unsetting %s", key)
	} else {
		output.Step(c.Out, "Setting %s to %s", key, strings.Join(values, " "))
	}
	return n.Pipeline.SetStorage(ctx, c.App.Name, c.ID, "network:set "+key, change, c.Out)
}

func (n *Network) report(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	var apps []*paas.App
	if len(c.Args) > 0 {
		a, err := usableApp(n.Apps, c.ID, c.Args[0])
		if err != nil {
			return err
		}
		apps = []*paas.App{a}
	} else {
		all, err := n.Apps.Apps()
		if err != nil {
			return err
		}
		for _, a := range all {
			if _, err := usableApp(n.Apps, c.ID, a.Name); err == nil {
				apps = append(apps, a)
			}
		}
	}
	for _, a := range apps {
		s := a.Network
		err := reportTrimmed(c, asJSON, false, a.Name+" network information", []kv{
			{"Network own", s.Own},
			{"Network attach post create", strings.Join(s.AttachPostCreate, " ")},
			{"Network attach post deploy", strings.Join(s.AttachPostDeploy, " ")},
			{"Network initial network", s.InitialNetwork},
			{"Network linked", strings.Join(s.Linked, " ")},
		})
		if err != nil {
			return err
		}
	}
	return nil
}
