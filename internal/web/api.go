package web

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"paas/internal/output"
	"paas/internal/paas"
)

// APIPrefix is where the API is served.
const APIPrefix = "/api/v1"

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the API's OpenAPI 3 document.
func OpenAPI() []byte { return bytes.Clone(openAPI) }

// maxBody bounds a request body (a certificate chain with its key is the
// largest the API takes).
const maxBody = 1 << 20

// Exit codes of the commands (commands.Exit*), which this layer may not import.
const (
	exitOK       = 0
	exitNotFound = 20
)

// apiFunc handles an authenticated API request as id.
type apiFunc func(w http.ResponseWriter, r *http.Request, id paas.Identity)

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET "+APIPrefix+"/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Write(openAPI)
	})
	handle := func(pattern string, h apiFunc) { m.Handle(pattern, s.authenticated(h)) }

	handle("GET "+APIPrefix+"/whoami", s.read("whoami"))
	handle("GET "+APIPrefix+"/apps", s.read("apps:list"))
	handle("POST "+APIPrefix+"/apps", s.createApp)
	handle("GET "+APIPrefix+"/apps/{app}", s.readApp("apps:report"))
	handle("DELETE "+APIPrefix+"/apps/{app}", s.act(func(r *http.Request, _ []byte) ([]string, error) {
		return []string{"apps:destroy", "--force", "--", r.PathValue("app")}, nil
	}))
	handle("GET "+APIPrefix+"/apps/{app}/releases", s.readApp("releases"))
	handle("POST "+APIPrefix+"/apps/{app}/rollback", s.act(func(r *http.Request, body []byte) ([]string, error) {
		var in struct {
			Version *int `json:"version"`
		}
		if err := decode(body, &in, true); err != nil {
			return nil, err
		}
		args := []string{"rollback", "--", r.PathValue("app")}
		if in.Version != nil {
			args = append(args, "v"+strconv.Itoa(*in.Version))
		}
		return args, nil
	}))
	handle("GET "+APIPrefix+"/apps/{app}/config", s.readApp("config:show"))
	handle("PATCH "+APIPrefix+"/apps/{app}/config", s.act(func(r *http.Request, body []byte) ([]string, error) {
		var in map[string]string
		if err := decode(body, &in, false); err != nil {
			return nil, err
		}
		if len(in) == 0 {
			return nil, badInput("give at least one KEY: VALUE")
		}
		args := append(noRestart(r, "config:set", "--encoded"), "--", r.PathValue("app"))
		keys := make([]string, 0, len(in))
		for k := range in {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if strings.Contains(k, "=") {
				return nil, badInput(fmt.Sprintf("invalid config key %q", k))
			}
			args = append(args, k+"="+base64.StdEncoding.EncodeToString([]byte(in[k])))
		}
		return args, nil
	}))
	handle("DELETE "+APIPrefix+"/apps/{app}/config/{key}", s.act(func(r *http.Request, _ []byte) ([]string, error) {
		return append(noRestart(r, "config:unset"), "--", r.PathValue("app"), r.PathValue("key")), nil
	}))
	handle("GET "+APIPrefix+"/apps/{app}/domains", s.readApp("domains:report"))
	handle("POST "+APIPrefix+"/apps/{app}/domains", s.act(func(r *http.Request, body []byte) ([]string, error) {
		var in struct {
			Domain string `json:"domain"`
		}
		if err := decode(body, &in, false); err != nil {
			return nil, err
		}
		if in.Domain == "" {
			return nil, badInput(`give {"domain": NAME}`)
		}
		return []string{"domains:add", "--", r.PathValue("app"), in.Domain}, nil
	}))
	handle("DELETE "+APIPrefix+"/apps/{app}/domains/{domain}", s.act(func(r *http.Request, _ []byte) ([]string, error) {
		return []string{"domains:remove", "--", r.PathValue("app"), r.PathValue("domain")}, nil
	}))
	handle("GET "+APIPrefix+"/apps/{app}/certs", s.readApp("certs:report"))
	handle("POST "+APIPrefix+"/apps/{app}/certs", s.certsAdd)
	handle("GET "+APIPrefix+"/apps/{app}/builds", s.builds)
	handle("GET "+APIPrefix+"/apps/{app}/builds/{id}", s.build("builds:info"))
	handle("GET "+APIPrefix+"/apps/{app}/builds/{id}/output", s.buildOutput)
	handle("GET "+APIPrefix+"/apps/{app}/logs", s.logs)
	handle("GET "+APIPrefix+"/apps/{app}/ps", s.ps)
	handle("GET "+APIPrefix+"/apps/{app}/scale", s.readApp("ps:scale"))
	handle("PUT "+APIPrefix+"/apps/{app}/scale", s.act(func(r *http.Request, body []byte) ([]string, error) {
		var in map[string]int
		if err := decode(body, &in, false); err != nil {
			return nil, err
		}
		if len(in) == 0 {
			return nil, badInput(`give at least one "PROCESS": COUNT`)
		}
		args := []string{"ps:scale", "--", r.PathValue("app")}
		types := make([]string, 0, len(in))
		for t := range in {
			types = append(types, t)
		}
		sort.Strings(types)
		for _, t := range types {
			if strings.Contains(t, "=") {
				return nil, badInput(fmt.Sprintf("invalid process type %q", t))
			}
			args = append(args, t+"="+strconv.Itoa(in[t]))
		}
		return args, nil
	}))
	handle("POST "+APIPrefix+"/apps/{app}/restart", s.act(func(r *http.Request, body []byte) ([]string, error) {
		var in struct {
			Process string `json:"process"`
		}
		if err := decode(body, &in, true); err != nil {
			return nil, err
		}
		args := []string{"ps:restart", "--", r.PathValue("app")}
		if in.Process != "" {
			args = append(args, in.Process)
		}
		return args, nil
	}))
	handle("GET "+APIPrefix+"/apps/{app}/acl", s.readApp("acl:list"))
	handle("POST "+APIPrefix+"/apps/{app}/acl", s.act(func(r *http.Request, body []byte) ([]string, error) {
		var in struct {
			Entry string `json:"entry"`
		}
		if err := decode(body, &in, false); err != nil {
			return nil, err
		}
		if in.Entry == "" {
			return nil, badInput(`give {"entry": "USER" or "@GROUP"}`)
		}
		return []string{"acl:add", "--", r.PathValue("app"), in.Entry}, nil
	}))
	handle("DELETE "+APIPrefix+"/apps/{app}/acl/{entry}", s.act(func(r *http.Request, _ []byte) ([]string, error) {
		return []string{"acl:remove", "--", r.PathValue("app"), r.PathValue("entry")}, nil
	}))
	handle("GET "+APIPrefix+"/apps/{app}/events", s.events)
	handle("GET "+APIPrefix+"/events", s.events)
	handle("GET "+APIPrefix+"/nodes", s.read("nodes:list"))
	handle("GET "+APIPrefix+"/tokens", s.read("tokens:list"))
	handle("POST "+APIPrefix+"/tokens", s.createToken)
	handle("DELETE "+APIPrefix+"/tokens/{name}", s.act(func(r *http.Request, _ []byte) ([]string, error) {
		return []string{"tokens:revoke", "--", r.PathValue("name")}, nil
	}))
	m.Handle(APIPrefix+"/", s.authenticated(func(w http.ResponseWriter, r *http.Request, _ paas.Identity) {
		problem(w, http.StatusNotFound, "no such resource: see "+APIPrefix+"/openapi.json", 0)
	}))
}

// authenticated runs h for a request whose credentials an Authenticator
// accepts; bad credentials are refused (401) and recorded.
func (s *Server) authenticated(h apiFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		id, ok, err := s.Authenticate(r)
		if err != nil {
			if s.opts.Refusals != nil {
				s.opts.Refusals.Refused(paas.Identity{Name: "-", Via: "api"}, "api:auth", "", truncate(r.Method+" "+r.URL.Path+": "+err.Error(), 300))
			}
			s.log.Info("API request refused", "method", r.Method, "path", r.URL.Path, "err", err)
			w.Header().Set("WWW-Authenticate", `Bearer realm="paas", error="invalid_token"`)
			problem(w, http.StatusUnauthorized, "authentication failed: "+err.Error(), 0)
			return
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="paas"`)
			problem(w, http.StatusUnauthorized, "authentication required: send Authorization: Bearer TOKEN (ssh paas tokens:create NAME)", 0)
			return
		}
		h(w, r, id)
	})
}

// read is a command that reads, answered with its --format json output.
func (s *Server) read(cmd string) apiFunc {
	return func(w http.ResponseWriter, r *http.Request, id paas.Identity) {
		s.respond(w, r, id, []string{cmd, "--format", "json"}, nil, http.StatusOK)
	}
}

// readApp is read for a command of one app.
func (s *Server) readApp(cmd string) apiFunc {
	return func(w http.ResponseWriter, r *http.Request, id paas.Identity) {
		s.respond(w, r, id, []string{cmd, "--format", "json", "--", r.PathValue("app")}, nil, http.StatusOK)
	}
}

// act is a command that changes something, its arguments made from the
// request by args; answered with its output as {"output": TEXT}.
func (s *Server) act(args func(r *http.Request, body []byte) ([]string, error)) apiFunc {
	return func(w http.ResponseWriter, r *http.Request, id paas.Identity) {
		body, err := readBody(w, r)
		if err != nil {
			problem(w, http.StatusBadRequest, err.Error(), 0)
			return
		}
		a, err := args(r, body)
		if err != nil {
			problem(w, http.StatusBadRequest, err.Error(), 0)
			return
		}
		s.respond(w, r, id, a, nil, http.StatusOK)
	}
}

func (s *Server) createApp(w http.ResponseWriter, r *http.Request, id paas.Identity) {
	body, err := readBody(w, r)
	var in struct {
		Name string `json:"name"`
	}
	if err == nil {
		err = decode(body, &in, false)
	}
	if err == nil && in.Name == "" {
		err = badInput(`give {"name": APP}`)
	}
	if err != nil {
		problem(w, http.StatusBadRequest, err.Error(), 0)
		return
	}
	s.respond(w, r, id, []string{"apps:create", "--", in.Name}, nil, http.StatusCreated)
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, id paas.Identity) {
	body, err := readBody(w, r)
	var in struct {
		Name    string `json:"name"`
		Expires string `json:"expires"`
	}
	if err == nil {
		err = decode(body, &in, false)
	}
	if err == nil && in.Name == "" {
		err = badInput(`give {"name": NAME, "expires": "90d"}`)
	}
	if err != nil {
		problem(w, http.StatusBadRequest, err.Error(), 0)
		return
	}
	args := []string{"tokens:create", "--format", "json"}
	if in.Expires != "" {
		args = append(args, "--expires", in.Expires)
	}
	s.respond(w, r, id, append(args, "--", in.Name), nil, http.StatusCreated)
}

func (s *Server) certsAdd(w http.ResponseWriter, r *http.Request, id paas.Identity) {
	body, err := readBody(w, r)
	if err != nil {
		problem(w, http.StatusBadRequest, err.Error(), 0)
		return
	}
	s.respond(w, r, id, []string{"certs:add", "--", r.PathValue("app")}, bytes.NewReader(body), http.StatusOK)
}

func (s *Server) build(cmd string) apiFunc {
	return func(w http.ResponseWriter, r *http.Request, id paas.Identity) {
		args := []string{cmd}
		if cmd == "builds:info" {
			args = append(args, "--format", "json")
		}
		s.respond(w, r, id, append(args, "--", r.PathValue("app"), r.PathValue("id")), nil, http.StatusOK)
	}
}

// builds answers builds:list's JSON list, or with ?follow=1 a stream of
// server-sent events, one "data:" line with the list at first and each
// time a build starts or ends (builds:list --watch), until the client goes
// away.
func (s *Server) builds(w http.ResponseWriter, r *http.Request, id paas.Identity) {
	if !isFollow(r) {
		s.readApp("builds:list")(w, r, id)
		return
	}
	s.stream(w, r, id, []string{"builds:list", "--watch", "--format", "json", "--", r.PathValue("app")})
}

// buildOutput answers a build's log, or with ?follow=1 a stream of
// server-sent events, a "data:" line per line of its output as it is
// written, until the build ends (builds:output --follow).
func (s *Server) buildOutput(w http.ResponseWriter, r *http.Request, id paas.Identity) {
	if !isFollow(r) {
		s.build("builds:output")(w, r, id)
		return
	}
	s.stream(w, r, id, plainArgs([]string{"builds:output", "--follow", "--", r.PathValue("app"), r.PathValue("id")}))
}

func (s *Server) events(w http.ResponseWriter, r *http.Request, id paas.Identity) {
	args := []string{"events", "--format", "json"}
	if n := r.URL.Query().Get("n"); n != "" {
		args = append(args, "-n", n)
	}
	args = append(args, "--")
	if app := r.PathValue("app"); app != "" {
		args = append(args, app)
	}
	s.respond(w, r, id, args, nil, http.StatusOK)
}

// logs answers the app's output: {"lines": [...]}, or with ?follow=1 a
// stream of server-sent events, one "data:" line per log line, until the
// client goes away.
func (s *Server) logs(w http.ResponseWriter, r *http.Request, id paas.Identity) {
	q := r.URL.Query()
	args := []string{"logs"}
	if n := q.Get("lines"); n != "" {
		args = append(args, "-n", n)
	}
	if p := q.Get("process"); p != "" {
		args = append(args, "-p", p)
	}
	follow := isFollow(r)
	if follow {
		args = append(args, "-t")
	}
	args = plainArgs(append(args, "--", r.PathValue("app")))
	if !follow {
		var out, errb bytes.Buffer
		code := s.opts.Commands.RunCommand(r.Context(), id, args, strings.NewReader(""), &out, &errb)
		if code != exitOK {
			commandProblem(w, code, errb.Bytes())
			return
		}
		lines := []string{}
		for _, l := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
		writeJSON(w, http.StatusOK, map[string][]string{"lines": lines})
		return
	}
	s.stream(w, r, id, args)
}

// isFollow reports whether the request asks for a stream (?follow=1).
func isFollow(r *http.Request) bool {
	f := r.URL.Query().Get("follow")
	return f == "1" || f == "true"
}

// ps answers ps:report's document, or with ?follow=1 a stream of
// server-sent events, one "data:" line with the document at first and at
// each change of the app's tasks (ps:report --watch), until the client goes
// away.
func (s *Server) ps(w http.ResponseWriter, r *http.Request, id paas.Identity) {
	if !isFollow(r) {
		s.readApp("ps:report")(w, r, id)
		return
	}
	s.stream(w, r, id, []string{"ps:report", "--watch", "--format", "json", "--", r.PathValue("app")})
}

// stream runs a command that prints until the client goes away, each
// line of its output a server-sent event; "end" carries its exit code. A
// command that fails before printing is answered as a problem.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, id paas.Identity, args []string) {
	sse := &sseWriter{w: w, rc: http.NewResponseController(w)}
	var errb bytes.Buffer
	code := s.opts.Commands.RunCommand(r.Context(), id, args, strings.NewReader(""), sse, &errb)
	if !sse.started {
		if code != exitOK {
			commandProblem(w, code, errb.Bytes())
			return
		}
		sse.start()
	}
	sse.flushPartial()
	if code != exitOK && r.Context().Err() == nil {
		fmt.Fprintf(w, "event: error\ndata: %s\n\n", oneLine(detailOf(errb.Bytes())))
	}
	fmt.Fprintf(w, "event: end\ndata: %d\n\n", code)
	sse.rc.Flush()
}

// sseWriter turns a command's output lines into server-sent events.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
	partial []byte
}

func (e *sseWriter) start() {
	h := e.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	e.w.WriteHeader(http.StatusOK)
	e.started = true
}

func (e *sseWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil // nothing said yet: a failure can still be a problem
	}
	if !e.started {
		e.start()
	}
	e.partial = append(e.partial, p...)
	wrote := false
	for {
		i := bytes.IndexByte(e.partial, '\n')
		if i < 0 {
			break
		}
		// a CR ends a line in an event stream too: what a progress bar
		// redraws with it becomes lines of its own
		for _, line := range strings.Split(strings.TrimRight(string(e.partial[:i]), "\r"), "\r") {
			if _, err := fmt.Fprintf(e.w, "data: %s\n\n", line); err != nil {
				return 0, err
			}
		}
		e.partial = e.partial[i+1:]
		wrote = true
	}
	if wrote {
		if err := e.rc.Flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (e *sseWriter) flushPartial() {
	if len(e.partial) > 0 {
		fmt.Fprintf(e.w, "data: %s\n\n", oneLine(string(e.partial)))
		e.partial = nil
	}
}

// Flush lets output.Flush reach the stream.
func (e *sseWriter) Flush() error { return nil }

// respond runs args as id and answers with its output: JSON as it is, text
// as {"output": TEXT}; a failure as a problem.
func (s *Server) respond(w http.ResponseWriter, r *http.Request, id paas.Identity, args []string, stdin io.Reader, status int) {
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var out, errb bytes.Buffer
	code := s.opts.Commands.RunCommand(r.Context(), id, plainArgs(args), stdin, &out, &errb)
	if code != exitOK {
		commandProblem(w, code, errb.Bytes())
		return
	}
	if b := bytes.TrimSpace(out.Bytes()); len(b) > 0 && (b[0] == '[' || b[0] == '{') && json.Valid(b) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(b)
		w.Write([]byte("\n"))
		return
	}
	writeJSON(w, status, map[string]string{"output": out.String()})
}

// PlainArgs is plainArgs, for the other handlers that run commands (the
// dashboard), so their audit lines read as the API's.
func PlainArgs(args []string) []string { return plainArgs(args) }

// plainArgs drops the "--" that ends a command line's flags when no
// argument after it looks like a flag: the audit log then reads as the
// same command over SSH. Where one does ("--help" as a domain), the "--"
// stays and keeps it an argument.
func plainArgs(args []string) []string {
	for i, a := range args {
		if a != "--" {
			continue
		}
		for _, b := range args[i+1:] {
			if strings.HasPrefix(b, "-") {
				return args
			}
		}
		return append(args[:i:i], args[i+1:]...)
	}
	return args
}

// commandProblem answers a failed command: 404 for an app that does not
// exist (or that the caller may not use: the same answer), 403 for what
// only administrators may do, 422 for the rest, with the command's message.
func commandProblem(w http.ResponseWriter, code int, stderr []byte) {
	detail := detailOf(stderr)
	status := http.StatusUnprocessableEntity
	switch {
	case code == exitNotFound:
		status = http.StatusNotFound
	case strings.Contains(detail, "for administrators only") || strings.HasPrefix(detail, "permission denied"):
		status = http.StatusForbidden
	case strings.Contains(detail, "is not a paas command") || strings.HasPrefix(detail, "unknown flag"):
		status = http.StatusBadRequest
	}
	problem(w, status, detail, code)
}

// detailOf is a command's error output without Dokku's " !     " prefixes.
func detailOf(stderr []byte) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(stderr))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := strings.TrimPrefix(sc.Text(), output.WarningPrefix)
		lines = append(lines, strings.TrimRight(l, " "))
	}
	d := strings.TrimSpace(strings.Join(lines, "\n"))
	if d == "" {
		d = "the command failed"
	}
	return d
}

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail"`
	ExitCode int    `json:"exit_code,omitempty"`
}

func problem(w http.ResponseWriter, status int, detail string, exitCode int) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	enc.Encode(Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail, ExitCode: exitCode})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

type inputError struct{ msg string }

func (e inputError) Error() string { return e.msg }

func badInput(msg string) error { return inputError{msg} }

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, badInput(fmt.Sprintf("the request body is over %d bytes", maxBody))
	}
	return body, err
}

// decode reads body as JSON into v; an empty body is allowed when optional.
func decode(body []byte, v any, optional bool) error {
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return nil
		}
		return badInput("the request needs a JSON body")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badInput("invalid JSON body: " + err.Error())
	}
	if dec.More() {
		return badInput("invalid JSON body: more than one value")
	}
	return nil
}

// noRestart is cmd with --no-restart when the request asks ?restart=0.
func noRestart(r *http.Request, cmd ...string) []string {
	if v := r.URL.Query().Get("restart"); v == "0" || v == "false" {
		return append(cmd, "--no-restart")
	}
	return cmd
}

func oneLine(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r", ""), "\n", " | ")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
