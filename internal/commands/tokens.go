package commands

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"paas/internal/output"
	"paas/internal/paas"
)

// TokenService makes, lists and revokes a user's API tokens (auth.Tokens).
type TokenService interface {
	Create(ctx context.Context, id paas.Identity, name string, ttl time.Duration) (string, *paas.Token, error)
	List(user string) ([]*paas.Token, error)
	Revoke(user, name string) error
}

// TokenCommands are tokens:create, tokens:list and tokens:revoke: a user's
// API tokens for the HTTP API (`Authorization: Bearer TOKEN`). exists is
// the error ts returns for a name the user has already.
func TokenCommands(ts TokenService, exists error) []*Command {
	return []*Command{
		{Name: "tokens:create", Args: "NAME [--expires DURATION] [--format json]", MinArgs: 1,
			Help:    "Make an API token for the HTTP API, acting as you; it is shown once",
			Details: "--expires: 90d, 12h, 30m (days, hours, minutes); without it the token does not expire.\nOnly its SHA-256 is stored: keep the token, it cannot be shown again. Revoke it with tokens:revoke NAME.",
			Flags:   map[string]bool{"--expires": true, "--format": true},
			Run: func(ctx context.Context, c *Call) error {
				asJSON, err := wantJSON(c)
				if err != nil {
					return err
				}
				name := c.Args[0]
				if err := paas.ValidateKeyName(name); err != nil {
					return fmt.Errorf("token name: %w", err)
				}
				if len(c.Args) > 1 {
					return fmt.Errorf("tokens:create takes one NAME\n Usage: tokens:create NAME [--expires DURATION]")
				}
				var ttl time.Duration
				if v, ok := c.Flags["--expires"]; ok {
					if ttl, err = ParseExpiry(v); err != nil {
						return err
					}
				}
				token, t, err := ts.Create(ctx, c.ID, name, ttl)
				if exists != nil && errors.Is(err, exists) {
					return fmt.Errorf("you have a token named %s already: revoke it first, or choose another name", name)
				}
				if err != nil {
					return err
				}
				if asJSON {
					return output.JSON(c.Out, struct {
						tokenJSON
						Token string `json:"token"`
					}{tokenToJSON(t), token})
				}
				output.Step(c.Out, "Token %s made for %s%s; it is shown only this once:", name, sanitize(c.ID.Name), expiry(t))
				fmt.Fprintln(c.Out, token)
				return nil
			}},
		{Name: "tokens:list", Args: "[--format json]", Help: "List your API tokens (never their secrets)", Flags: formatFlag,
			Run: func(_ context.Context, c *Call) error {
				asJSON, err := wantJSON(c)
				if err != nil {
					return err
				}
				list, err := ts.List(c.ID.Name)
				if err != nil {
					return err
				}
				if asJSON {
					out := make([]tokenJSON, 0, len(list))
					for _, t := range list {
						out = append(out, tokenToJSON(t))
					}
					return output.JSON(c.Out, out)
				}
				output.Header(c.Out, "%s API tokens", sanitize(c.ID.Name))
				if len(list) == 0 {
					fmt.Fprintln(c.Out, "none")
				}
				for _, t := range list {
					used := "never used"
					if !t.LastUsedAt.IsZero() {
						used = "last used " + t.LastUsedAt.UTC().Format(time.RFC3339)
					}
					fmt.Fprintf(c.Out, "%-20s created %s%s, %s\n", t.Name, t.CreatedAt.UTC().Format(time.RFC3339), expiry(t), used)
				}
				return nil
			}},
		{Name: "tokens:revoke", Args: "NAME", Help: "Revoke one of your API tokens: it stops working at once", MinArgs: 1,
			Run: func(_ context.Context, c *Call) error {
				name := c.Args[0]
				if err := ts.Revoke(c.ID.Name, name); errors.Is(err, paas.ErrTokenNotFound) {
					return fmt.Errorf("you have no token named %s", sanitize(name))
				} else if err != nil {
					return err
				}
				output.Step(c.Out, "Token %s revoked", name)
				return nil
			}},
	}
}

type tokenJSON struct {
	Name       string  `json:"name"`
	User       string  `json:"user"`
	CreatedAt  string  `json:"created_at"`
	ExpiresAt  *string `json:"expires_at"`
	LastUsedAt *string `json:"last_used_at"`
}

func tokenToJSON(t *paas.Token) tokenJSON {
	j := tokenJSON{Name: t.Name, User: t.User, CreatedAt: t.CreatedAt.UTC().Format(time.RFC3339)}
	if !t.ExpiresAt.IsZero() {
		s := t.ExpiresAt.UTC().Format(time.RFC3339)
		j.ExpiresAt = &s
	}
	if !t.LastUsedAt.IsZero() {
		s := t.LastUsedAt.UTC().Format(time.RFC3339)
		j.LastUsedAt = &s
	}
	return j
}

func expiry(t *paas.Token) string {
	if t.ExpiresAt.IsZero() {
		return ", no expiry"
	}
	return ", expires " + t.ExpiresAt.UTC().Format(time.RFC3339)
}

// maxTokenTTL bounds --expires (10 years).
const maxTokenTTL = 10 * 365 * 24 * time.Hour

// ParseExpiry reads --expires: a number of days (90d), or a Go duration
// (12h, 30m, 90s), at least a second and at most 10 years.
func ParseExpiry(v string) (time.Duration, error) {
	var d time.Duration
	var err error
	if n, ok := strings.CutSuffix(v, "d"); ok {
		var days int
		days, err = strconv.Atoi(n)
		d = time.Duration(days) * 24 * time.Hour
		if days > 3650 {
			d = maxTokenTTL + 1
		}
	} else {
		d, err = time.ParseDuration(v)
	}
	if err != nil || d < time.Second || d > maxTokenTTL {
		return 0, fmt.Errorf("--expires %q: use a duration such as 90d, 12h or 30m, at least 1s and at most 3650d", sanitize(v))
	}
	return d, nil
}
