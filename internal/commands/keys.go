package commands

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"paas/internal/auth"
	"paas/internal/output"
	"paas/internal/paas"
)

func (p *Platform) keyCommands() []*Command {
	return []*Command{
		{Name: "ssh-keys:add", Args: "NAME < key.pub", Help: "Add a user's public key, read from stdin", Admin: true, MinArgs: 1, Run: p.keysAdd},
		{Name: "ssh-keys:list", Help: "List the users' keys", Admin: true, Flags: formatFlag, Run: p.keysList},
		{Name: "ssh-keys:remove", Args: "NAME", Help: "Remove a user's key", Admin: true, MinArgs: 1, Run: p.keysRemove},
	}
}

// maxKeyInput bounds what ssh-keys:add reads: one public key line (an RSA
// 16384-bit key is under 3 KB).
const maxKeyInput = 16 << 10

func (p *Platform) keysAdd(_ context.Context, c *Call) error {
	name := c.Args[0]
	if err := paas.ValidateKeyName(name); err != nil {
		return err
	}
	data, err := io.ReadAll(io.LimitReader(c.Stdin, maxKeyInput+1))
	if err != nil {
		return fmt.Errorf("read key: %w", err)
	}
	if len(data) > maxKeyInput {
		return refuse("more than %d KB on stdin: give one public key, e.g. ssh-keys:add %s < ~/.ssh/id_ed25519.pub", maxKeyInput>>10, name)
	}
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	if len(lines) != 1 || len(lines[0]) == 0 {
		return fmt.Errorf("expected exactly one public key on stdin, e.g. ssh-keys:add %s < ~/.ssh/id_ed25519.pub", name)
	}
	key, _, err := auth.ParseKey(lines[0])
	if err != nil {
		return fmt.Errorf("invalid public key: %v", err)
	}
	k := &paas.SSHKey{Name: name, Fingerprint: gossh.FingerprintSHA256(key), Key: auth.Normalize(key), AddedBy: c.ID.Name, AddedAt: time.Now().UTC()}
	if err := p.Store.AddKey(k); err != nil {
		return err
	}
	fmt.Fprintf(c.Out, "%s\n", k.Fingerprint)
	return nil
}

func (p *Platform) keysList(_ context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	keys, err := p.Store.Keys()
	if err != nil {
		return err
	}
	if asJSON {
		type keyJSON struct {
			Name        string `json:"name"`
			Fingerprint string `json:"fingerprint"`
			AddedBy     string `json:"added_by"`
		}
		list := make([]keyJSON, 0, len(keys))
		for _, k := range keys {
			list = append(list, keyJSON{k.Name, k.Fingerprint, k.AddedBy})
		}
		return output.JSON(c.Out, list)
	}
	if len(keys) == 0 {
		return fmt.Errorf("No public keys found.")
	}
	for _, k := range keys {
		fmt.Fprintf(c.Out, "%s NAME=\"%s\"\n", k.Fingerprint, k.Name)
	}
	return nil
}

func (p *Platform) keysRemove(_ context.Context, c *Call) error {
	if err := paas.ValidateKeyName(c.Args[0]); err != nil {
		return err
	}
	if err := p.Store.RemoveKey(c.Args[0]); err != nil {
		return fmt.Errorf("no key named %s", c.Args[0])
	}
	output.Step(c.Out, "Removed key %s", c.Args[0])
	return nil
}
