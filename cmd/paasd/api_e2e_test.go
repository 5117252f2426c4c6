package main

// The HTTP API end to end (api.txtar): requests with the real HTTP client
// to paas.DOMAIN on the router's HTTPS port, checked against the
// installation's CA, and every response validated against the API's
// OpenAPI document.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/rogpeppe/go-internal/testscript"

	"paas/internal/daemon"
	"paas/internal/web"
)

func init() {
	scriptCmds["api"] = cmdAPI
	scriptCmds["api-sse"] = cmdAPISSE
	scriptCmds["token-env"] = cmdTokenEnv
}

var openAPIRouter = sync.OnceValues(func() (routers.Router, error) {
	doc, err := openapi3.NewLoader().LoadFromData(web.OpenAPI())
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the OpenAPI document is invalid: %w", err)
	}
	doc.Servers = openapi3.Servers{{URL: "https://paas.paas.test/api/v1"}}
	openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("application/x-pem-file", openapi3filter.PlainBodyDecoder)
	return gorillamux.NewRouter(doc)
})

// apiClient is an HTTPS client of the installation's control plane host,
// through the router on 127.0.0.1, trusting the installation's CA.
func apiClient(ts *testscript.TestScript) *http.Client {
	ca, err := os.ReadFile(filepath.Join(ts.Getenv("DATA_DIR"), daemon.WebTLSDir, "ca.crt"))
	ts.Check(err)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		ts.Fatalf("no CA in %s", daemon.WebTLSDir)
	}
	addr := "127.0.0.1:" + ts.Getenv("HTTPS_PORT")
	return &http.Client{
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "paas.paas.test"},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
		},
	}
}

// api [-t TOKENVAR|-t none] [-ct TYPE] METHOD PATH [BODY|@FILE]: a request
// to https://paas.paas.test/api/v1PATH with the token in $TOKENVAR ($TOKEN
// by default); prints the status, the content type and the body. The
// response must match the OpenAPI document.
func cmdAPI(ts *testscript.TestScript, neg bool, args []string) {
	tokenVar, ctype := "TOKEN", "application/json"
	for len(args) > 1 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-t":
			tokenVar = args[1]
		case "-ct":
			ctype = args[1]
		default:
			ts.Fatalf("api: unknown flag %s", args[0])
		}
		args = args[2:]
	}
	if len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: api [-t TOKENVAR] [-ct TYPE] METHOD PATH [BODY|@FILE]")
	}
	var body []byte
	if len(args) == 3 {
		body = []byte(args[2])
		if f, ok := strings.CutPrefix(args[2], "@"); ok {
			var err error
			body, err = os.ReadFile(ts.MkAbs(f))
			ts.Check(err)
		}
	}
	req, err := http.NewRequest(args[0], "https://paas.paas.test"+web.APIPrefix+args[1], bytes.NewReader(body))
	ts.Check(err)
	if body != nil {
		req.Header.Set("Content-Type", ctype)
	}
	if tokenVar != "none" {
		req.Header.Set("Authorization", "Bearer "+ts.Getenv(tokenVar))
	}
	resp, err := apiClient(ts).Do(req)
	ts.Check(err)
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	ts.Check(err)
	fmt.Fprintf(ts.Stdout(), "status %d\ncontent-type %s\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), got)
	if err := validateAPIResponse(req, body, resp, got); err != nil {
		ts.Fatalf("%s %s: the response does not match the OpenAPI document: %v\n%s", args[0], args[1], err, got)
	}
	if (resp.StatusCode >= 400) != neg {
		ts.Fatalf("%s %s: status %d", args[0], args[1], resp.StatusCode)
	}
}

// validateAPIResponse checks a response against the operation the
// OpenAPI document gives its request.
func validateAPIResponse(req *http.Request, body []byte, resp *http.Response, got []byte) error {
	router, err := openAPIRouter()
	if err != nil {
		return err
	}
	r := req.Clone(context.Background())
	r.Body = io.NopCloser(bytes.NewReader(body))
	route, params, err := router.FindRoute(r)
	if err != nil {
		if resp.StatusCode == http.StatusNotFound {
			return nil // a path the API does not have: its 404 is not an operation's
		}
		return fmt.Errorf("find the operation: %w", err)
	}
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	return openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(got)), Options: &openapi3filter.Options{IncludeResponseStatus: true},
	})
}

// api-sse PATH TEXT: follow a server-sent events stream (with $TOKEN)
// until a data line contains TEXT, for at most 60 seconds; prints the
// lines read.
func cmdAPISSE(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: api-sse PATH TEXT")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "https://paas.paas.test"+web.APIPrefix+args[0], nil)
	ts.Check(err)
	req.Header.Set("Authorization", "Bearer "+ts.Getenv("TOKEN"))
	c := apiClient(ts)
	c.Timeout = 0
	resp, err := c.Do(req)
	ts.Check(err)
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		ts.Fatalf("GET %s: %d %s: %s", args[0], resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(ts.Stdout(), line)
		if strings.HasPrefix(line, "data: ") && strings.Contains(line, args[1]) {
			return
		}
	}
	ts.Fatalf("the stream ended (%v) before a line contained %q", sc.Err(), args[1])
}

// token-env [-forge] VAR FILE: set $VAR to the API token in FILE (a
// tokens:create output); -forge: the same installation and ID with
// another secret.
func cmdTokenEnv(ts *testscript.TestScript, neg bool, args []string) {
	forge := len(args) == 3 && args[0] == "-forge"
	if forge {
		args = args[1:]
	}
	if len(args) != 2 {
		ts.Fatalf("usage: token-env [-forge] VAR FILE")
	}
	data, err := os.ReadFile(ts.MkAbs(args[1]))
	ts.Check(err)
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "paas_") {
			if forge {
				line = line[:len(line)-43] + strings.Repeat("A", 43)
			}
			ts.Setenv(args[0], line)
			return
		}
	}
	ts.Fatalf("no token in %s", args[1])
}
