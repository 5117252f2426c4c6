// Command api is the HTTP API benchmark of issue 19: with 500 apps in the
// store, GET /api/v1/apps through the router (HTTPS, paas.DOMAIN, an API
// token) against its peer in the same run, the same listing over SSH
// (`apps:list --format json`, a new session on one kept connection, as the
// API's client keeps its HTTPS connection), interleaved, p50 and p99 of N
// requests each, and the ratio. Both run the same command of the same
// dispatcher, as the same user; the difference is the door.
//
//	go run ./scripts/bench/api [-n 1000] [-apps 500]
//
// It starts a real paasd (its router in Swarm, scripts/bench/benchpaasd)
// and needs Go, OpenSSH's ssh-keygen and Docker in swarm mode
// (scripts/install.sh --deps). Everything it starts is stopped and removed
// at the end.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"paas/scripts/bench/benchpaasd"
)

func main() { benchpaasd.Main(run) }

func run(ctx context.Context, n, apps int) error {
	in, err := benchpaasd.Start(ctx, "a", apps)
	if err != nil {
		return err
	}
	defer in.Close()
	api := &benchpaasd.Side{Name: "api", Call: func() ([]byte, error) { return in.Get(ctx, in.Client, "/api/v1/apps", in.Token) }}
	ssh := &benchpaasd.Side{Name: "ssh", Call: func() ([]byte, error) {
		out, err := in.Run("apps:list --format json")
		return []byte(out), err
	}}
	for _, sd := range []*benchpaasd.Side{api, ssh} {
		body, err := sd.Call()
		if err != nil {
			return err
		}
		var names []string
		if err := json.Unmarshal(body, &names); err != nil || len(names) != apps {
			return fmt.Errorf("%s listed %d apps (%v), want %d", sd.Name, len(names), err, apps)
		}
	}
	if err := benchpaasd.Interleave(ctx, n, []*benchpaasd.Side{api, ssh}); err != nil {
		return err
	}
	pct, ms := benchpaasd.Pct, benchpaasd.Ms
	fmt.Printf("\n| %d apps, N=%d | p50 | p99 |\n|---|---|---|\n", apps, n)
	fmt.Printf("| GET /api/v1/apps (HTTPS through the router, token) | %s | %s |\n", ms(pct(api.Times, 50)), ms(pct(api.Times, 99)))
	fmt.Printf("| ssh apps:list --format json (session on a kept connection) | %s | %s |\n", ms(pct(ssh.Times, 50)), ms(pct(ssh.Times, 99)))
	fmt.Printf("ratio API/SSH: p50 %.2fx, p99 %.2fx\n", benchpaasd.Ratio(pct(api.Times, 50), pct(ssh.Times, 50)), benchpaasd.Ratio(pct(api.Times, 99), pct(ssh.Times, 99)))
	verdict := "met"
	if pct(api.Times, 99) >= 50*time.Millisecond {
		verdict = "MISSED"
	}
	fmt.Printf("target GET /api/v1/apps p99 < 50 ms: %s\n", verdict)
	return nil
}
