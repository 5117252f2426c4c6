package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"paas/internal/paas"
)

// fakeCommands records the command lines it runs and answers with a
// canned exit code and output.
type fakeCommands struct {
	ran    [][]string
	code   int
	stdout string
	stderr string
}

func (f *fakeCommands) RunCommand(_ context.Context, id paas.Identity, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	f.ran = append(f.ran, args)
	io.WriteString(stdout, f.stdout)
	io.WriteString(stderr, f.stderr)
	return f.code
}

type fixedAuth struct {
	id  paas.Identity
	err error
}

func (a fixedAuth) Authenticate(r *http.Request) (paas.Identity, bool, error) {
	if r.Header.Get("Authorization") == "" {
		return paas.Identity{}, false, nil
	}
	return a.id, a.err == nil, a.err
}

func TestOpenAPIDocument(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestAPI(t *testing.T) {
	for _, c := range []struct {
		name, method, path, body string
		noAuth                   bool
		authErr                  error
		code                     int
		stdout, stderr           string
		wantArgs                 []string // nil: no command runs
		wantStatus               int
		wantBody                 string
	}{
		{name: "list", method: "GET", path: "/apps", stdout: `["a","b"]` + "\n",
			wantArgs: []string{"apps:list", "--format", "json"}, wantStatus: 200, wantBody: `["a","b"]`},
		{name: "an app is a plain argument", method: "GET", path: "/apps/web1/releases", stdout: "[]\n",
			wantArgs: []string{"releases", "--format", "json", "web1"}, wantStatus: 200},
		{name: "a flag-like path value stays an argument", method: "DELETE", path: "/apps/web1/domains/--help", code: 1, stderr: " !     invalid domain\n",
			wantArgs: []string{"domains:remove", "--", "web1", "--help"}, wantStatus: 422, wantBody: `"detail":"invalid domain"`},
		{name: "missing or forbidden app", method: "GET", path: "/apps/nope", code: 20, stderr: " !     App nope does not exist\n",
			wantArgs: []string{"apps:report", "--format", "json", "nope"}, wantStatus: 404, wantBody: `"detail":"App nope does not exist","exit_code":20`},
		{name: "administrators only", method: "GET", path: "/nodes", code: 1, stderr: " !     nodes:list is for administrators only\n",
			wantArgs: []string{"nodes:list", "--format", "json"}, wantStatus: 403},
		{name: "config values go base64", method: "PATCH", path: "/apps/web1/config?restart=0", body: `{"B":"x y","A":"1=2"}`,
			wantArgs: []string{"config:set", "--encoded", "--no-restart", "web1", "A=MT0y", "B=eCB5"}, wantStatus: 200, wantBody: `"output"`},
		{name: "scale", method: "PUT", path: "/apps/web1/scale", body: `{"worker":2,"web":3}`,
			wantArgs: []string{"ps:scale", "web1", "web=3", "worker=2"}, wantStatus: 200},
		{name: "a build's output followed, a CR ending a line too", method: "GET", path: "/apps/web1/builds/2/output?follow=1", stdout: "-----> Building\r\n10%\r50%\r\n",
			wantArgs: []string{"builds:output", "--follow", "web1", "2"}, wantStatus: 200,
			wantBody: "data: -----> Building\n\ndata: 10%\n\ndata: 50%\n\nevent: end\ndata: 0\n\n"},
		{name: "a build one may not follow", method: "GET", path: "/apps/web1/builds/9/output?follow=1", code: 1, stderr: " !     web1 has no build 9\n",
			wantArgs: []string{"builds:output", "--follow", "web1", "9"}, wantStatus: 422, wantBody: `"detail":"web1 has no build 9"`},
		{name: "builds followed", method: "GET", path: "/apps/web1/builds?follow=1", stdout: "[]\n[{\"id\":1}]\n",
			wantArgs: []string{"builds:list", "--watch", "--format", "json", "--", "web1"}, wantStatus: 200,
			wantBody: "data: []\n\ndata: [{\"id\":1}]\n\nevent: end\ndata: 0\n\n"},
		{name: "bad JSON", method: "POST", path: "/apps", body: `{"name":`, wantStatus: 400, wantBody: "invalid JSON body"},
		{name: "unknown field", method: "POST", path: "/apps", body: `{"name":"a","x":1}`, wantStatus: 400, wantBody: "unknown field"},
		{name: "wrong type", method: "PUT", path: "/apps/web1/scale", body: `{"web":"3"}`, wantStatus: 400},
		{name: "no credentials", method: "GET", path: "/apps", noAuth: true, wantStatus: 401, wantBody: "authentication required"},
		{name: "bad credentials", method: "GET", path: "/apps", authErr: fmt.Errorf("token expired"), wantStatus: 401, wantBody: "token expired"},
		{name: "unknown resource", method: "GET", path: "/nothing", wantStatus: 404},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmds := &fakeCommands{code: c.code, stdout: c.stdout, stderr: c.stderr}
			s := New(Options{Commands: cmds, Authenticators: []Authenticator{fixedAuth{id: paas.Identity{Name: "alice"}, err: c.authErr}}})
			req := httptest.NewRequest(c.method, APIPrefix+c.path, strings.NewReader(c.body))
			if !c.noAuth {
				req.Header.Set("Authorization", "Bearer x")
			}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			if rec.Code != c.wantStatus || !strings.Contains(rec.Body.String(), c.wantBody) {
				t.Errorf("%d %s; want %d with %q", rec.Code, rec.Body, c.wantStatus, c.wantBody)
			}
			if rec.Code >= 400 {
				if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("content type %q", ct)
				}
				var p Problem
				if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != rec.Code {
					t.Errorf("problem %s: %v", rec.Body, err)
				}
			}
			var last []string
			if len(cmds.ran) > 0 {
				last = cmds.ran[len(cmds.ran)-1]
			}
			if !slices.Equal(last, c.wantArgs) {
				t.Errorf("ran %q, want %q", last, c.wantArgs)
			}
		})
	}
}
