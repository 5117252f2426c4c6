package commands

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"paas/internal/paas"
	"paas/scheduler"
)

// memRoutingStore keeps routing settings in memory (the dokku-apps tests').
type memRoutingStore struct {
	mu sync.Mutex
	r  map[string]*paas.Routing
}

var _ RoutingStore = (*memRoutingStore)(nil)

func (f *memRoutingStore) Routing(app string) (*paas.Routing, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.r[app]; ok {
		c := *r
		return &c, nil
	}
	return &paas.Routing{}, nil
}

func (f *memRoutingStore) UpdateRouting(app string, fn func(*paas.Routing) error) (*paas.Routing, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := &paas.Routing{}
	if old, ok := f.r[app]; ok {
		c := *old
		r = &c
	}
	if err := fn(r); err != nil {
		return nil, err
	}
	if f.r == nil {
		f.r = map[string]*paas.Routing{}
	}
	f.r[app] = r
	return r, nil
}

func (f *memRoutingStore) SetGlobalDomain(string) error { return nil }

func (f *memRoutingStore) SetGlobalDomains([]string) error { return nil }

// fakeSources records git:sync and git:from-archive.
type fakeSources struct {
	syncs    []SyncOptions
	archives []ArchiveOptions
	body     string // what the archive's Stdin held
}

func (f *fakeSources) Sync(_ context.Context, app string, _ paas.Identity, opts SyncOptions, _ io.Writer) error {
	f.syncs = append(f.syncs, opts)
	return nil
}

func (f *fakeSources) FromArchive(_ context.Context, app string, _ paas.Identity, opts ArchiveOptions, _ io.Writer) error {
	if opts.Stdin != nil {
		b, _ := io.ReadAll(opts.Stdin)
		f.body = string(b)
		opts.Stdin = nil
	}
	f.archives = append(f.archives, opts)
	return nil
}

// dokkuEnv is newEnv with routing and git sources behind the platform.
type dokkuEnv struct {
	*env
	routing      *fakeRouting
	routingStore *memRoutingStore
	sources      *fakeSources
	platform     *Platform
}

func newDokkuEnv(t *testing.T) *dokkuEnv {
	e := &dokkuEnv{env: newEnv(t), routing: &fakeRouting{}, routingStore: &memRoutingStore{}, sources: &fakeSources{}}
	p := &Platform{
		Store: e.store, Pipeline: e.pipeline, Runtime: e.runtime, Repos: e.repos, Images: e.images,
		AppURL:   func(app string) string { return "http://" + app + ".example.test" },
		Releases: e.releases, OneOffs: e.releases,
		Routing: e.routing, RoutingStore: e.routingStore, Sources: e.sources,
	}
	e.d, e.platform = NewDispatcher(e.store, "1.2.3", p.Builtins()), p
	e.store.onRename = func(old, to string) { // the store moves routing settings with the app
		e.routingStore.mu.Lock()
		defer e.routingStore.mu.Unlock()
		if r, ok := e.routingStore.r[old]; ok {
			e.routingStore.r[to] = r
			delete(e.routingStore.r, old)
		}
	}
	return e
}

func cert(names []string, notAfter time.Time) *paas.Cert {
	return &paas.Cert{Names: names, NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter}
}

func TestURLs(t *testing.T) {
	later, earlier := time.Now().Add(24*time.Hour), time.Now().Add(-time.Minute)
	tests := []struct {
		name     string
		routing  *paas.Routing
		wantURL  string
		wantURLs []string
	}{
		{"default name only", nil, "http://alpha.paas.test:8080", []string{"http://alpha.paas.test:8080"}},
		{
			"custom domains, a wildcard left out", &paas.Routing{Domains: []string{"www.example.com", "*.preview.example.com"}},
			"http://alpha.paas.test:8080", []string{"http://alpha.paas.test:8080", "http://www.example.com:8080"},
		},
		{
			"https where a certificate covers the name", &paas.Routing{Domains: []string{"www.example.com"}, Cert: cert([]string{"www.example.com"}, later)},
			"https://www.example.com:8443", []string{"http://alpha.paas.test:8080", "https://www.example.com:8443"},
		},
		{
			"a wildcard certificate on the default name", &paas.Routing{Domains: []string{"www.example.com"}, ACMECert: cert([]string{"*.paas.test"}, later)},
			"https://alpha.paas.test:8443", []string{"http://www.example.com:8080", "https://alpha.paas.test:8443"},
		},
		{
			"an expired certificate serves nothing", &paas.Routing{Cert: cert([]string{"alpha.paas.test"}, earlier)},
			"http://alpha.paas.test:8080", []string{"http://alpha.paas.test:8080"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newDokkuEnv(t)
			if tc.routing != nil {
				e.routingStore.r = map[string]*paas.Routing{"alpha": tc.routing}
			}
			code, out, errOut := e.run(t, alice, "", "url", "alpha")
			if code != ExitOK || out != tc.wantURL+"\n" {
				t.Fatalf("url: exit %d %q %q, want %q", code, out, errOut, tc.wantURL)
			}
			code, out, _ = e.run(t, alice, "", "urls", "alpha")
			if want := strings.Join(tc.wantURLs, "\n") + "\n"; code != ExitOK || out != want {
				t.Fatalf("urls: exit %d %q, want %q", code, out, want)
			}
			_, out, _ = e.run(t, alice, "", "urls", "--format", "json", "alpha")
			var got []string
			if err := json.Unmarshal([]byte(out), &got); err != nil || !slices.Equal(got, tc.wantURLs) {
				t.Fatalf("urls --format json %q (%v)", out, err)
			}
		})
	}
	t.Run("without routing, the app's URL", func(t *testing.T) {
		e := newEnv(t)
		if code, out, _ := e.run(t, alice, "", "url", "alpha"); code != ExitOK || out != "http://alpha.example.test\n" {
			t.Fatalf("url: %d %q", code, out)
		}
	})
	t.Run("a missing app", func(t *testing.T) {
		e := newDokkuEnv(t)
		if code, _, errOut := e.run(t, alice, "", "url", "bravo"); code != ExitNotFound || !strings.Contains(errOut, "App bravo does not exist") {
			t.Fatalf("url of an app alice may not use: %d %q", code, errOut)
		}
	})
}

func TestAppsReportDokkuKeys(t *testing.T) {
	e := newDokkuEnv(t)
	e.store.settings.DisableAutocreation = true
	e.store.UpdateApp("alpha", func(a *paas.App) error {
		a.DeploySource, a.DeploySourceMetadata = "git-sync", "https://example.com/x.git#abc"
		return nil
	})
	code, out, errOut := e.run(t, alice, "", "apps:report", "alpha")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"App created at:", "1700000000", "App deploy source:", "git-sync", "App deploy source metadata:", "https://example.com/x.git#abc",
		"App dir:", "App global disable autocreation:", "true", "App locked:", "false", "App url:", "http://alpha.paas.test:8080"} {
		if !strings.Contains(out, want) {
			t.Errorf("apps:report lacks %q:\n%s", want, out)
		}
	}
	for flag, want := range map[string]string{"--app-created-at": "1700000000", "--app-deploy-source": "git-sync", "--app-global-disable-autocreation": "true", "--app-locked": "false"} {
		if _, out, _ := e.run(t, alice, "", "apps:report", "alpha", flag); out != want+"\n" {
			t.Errorf("apps:report %s = %q, want %q", flag, out, want)
		}
	}
	_, out, _ = e.run(t, alice, "", "apps:report", "--format", "json", "alpha")
	var m map[string]string
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("not JSON: %v %s", err, out)
	}
	// Dokku 0.38: the keys without the app- prefix, and the legacy ones
	if m["created-at"] != "1700000000" || m["app-created-at"] != "1700000000" || m["deploy-source"] != "git-sync" || m["locked"] != "false" {
		t.Fatalf("apps:report --format json = %v", m)
	}
}

func TestGitSetAndReport(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantErr    string
		wantBranch string // alpha's DeployBranch afterwards
	}{
		{name: "set", args: []string{"git:set", "alpha", "deploy-branch", "release/v2"}, wantBranch: "release/v2"},
		{name: "unset", args: []string{"git:set", "alpha", "deploy-branch"}},
		{name: "an option-looking branch", args: []string{"git:set", "alpha", "deploy-branch", "--upload-pack=x"}, wantCode: ExitError, wantErr: "unknown flag"},
		{name: "an option-looking branch after --", args: []string{"git:set", "alpha", "deploy-branch", "--", "-x"}, wantCode: ExitError, wantErr: `invalid branch name "-x"`},
		{name: "a branch git refuses", args: []string{"git:set", "alpha", "deploy-branch", "a..b"}, wantCode: ExitError, wantErr: `invalid branch name "a..b"`},
		{name: "a branch with a space", args: []string{"git:set", "alpha", "deploy-branch", "a b"}, wantCode: ExitError, wantErr: "invalid branch name"},
		{name: "a property paas lacks", args: []string{"git:set", "alpha", "keep-git-dir", "true"}, wantCode: ExitError, wantErr: "not supported by paas"},
		{name: "an unknown property", args: []string{"git:set", "alpha", "colour", "red"}, wantCode: ExitError, wantErr: `unknown property "colour"`},
		{name: "too many values", args: []string{"git:set", "alpha", "deploy-branch", "a", "b"}, wantCode: ExitError, wantErr: "Unexpected argument(s): b"},
		{name: "an app one may not use", args: []string{"git:set", "bravo", "deploy-branch", "x"}, wantCode: ExitNotFound, wantErr: "App bravo does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newDokkuEnv(t)
			e.store.UpdateApp("alpha", func(a *paas.App) error { a.DeployBranch = "before"; return nil })
			want := tc.wantBranch
			if tc.wantCode != ExitOK {
				want = "before"
			}
			code, _, errOut := e.run(t, alice, "", tc.args...)
			if code != tc.wantCode || !strings.Contains(errOut, tc.wantErr) {
				t.Fatalf("exit %d %q, want %d %q", code, errOut, tc.wantCode, tc.wantErr)
			}
			if a, _ := e.store.App("alpha"); a.DeployBranch != want {
				t.Fatalf("deploy branch %q, want %q", a.DeployBranch, want)
			}
		})
	}
	e := newDokkuEnv(t)
	e.run(t, alice, "", "git:set", "alpha", "deploy-branch", "prod")
	_, out, _ := e.run(t, alice, "", "git:report", "alpha")
	for _, want := range []string{"=====> alpha git information", "Git computed deploy branch:", "prod", "Git keep git dir:", "Git sha:"} {
		if !strings.Contains(out, want) {
			t.Errorf("git:report lacks %q:\n%s", want, out)
		}
	}
	if _, out, _ := e.run(t, alice, "", "git:report", "alpha", "--git-deploy-branch"); out != "prod\n" {
		t.Errorf("--git-deploy-branch = %q", out)
	}
	_, out, _ = e.run(t, alice, "", "git:report", "alpha", "--format", "json")
	var m map[string]string
	if json.Unmarshal([]byte(out), &m) != nil || m["deploy-branch"] != "prod" || m["computed-deploy-branch"] != "prod" {
		t.Fatalf("git:report --format json = %s", out)
	}
	if _, legacy := m["git-deploy-branch"]; legacy {
		t.Errorf("git:report JSON has legacy keys, as Dokku's does not: %s", out)
	}
	if code, _, errOut := e.run(t, alice, "", "git:report", "alpha", "--git-colour"); code != ExitError || !strings.Contains(errOut, "unknown flag --git-colour") {
		t.Errorf("unknown flag: %d %q", code, errOut)
	}
}

func TestCheckGitURL(t *testing.T) {
	tests := []struct {
		url     string
		admin   bool
		want    string // the protocol allowed, "" when refused
		wantErr string
	}{
		{url: "https://github.com/heroku/node-js-getting-started.git", want: "https"},
		{url: "http://git.example.com/a.git", want: "http"},
		{url: "ssh://git@git.example.com:2222/a.git", want: "ssh"},
		{url: "git@github.com:heroku/app.git", want: "ssh"},
		{url: "git://127.0.0.1:9418/app", want: "git"},
		{url: "file:///srv/git/app.git", admin: true, want: "file"},
		{url: "file:///srv/git/app.git", wantErr: "administrators only"},
		{url: "file://host/srv/app.git", admin: true, wantErr: "file:///absolute/path"},
		{url: "/srv/git/app.git", admin: true, wantErr: "use a URL"},
		{url: "../other-app.git", wantErr: "use a URL"},
		{url: "ext::sh -c touch% /tmp/pwned", wantErr: "not a URL git may fetch from"},
		{url: "ext::nc", wantErr: "scheme ext is not allowed"},
		{url: "--upload-pack=touch /tmp/x", wantErr: "not a URL git may fetch from"},
		{url: "ssh://-oProxyCommand=x/a", wantErr: "invalid host"},
		{url: "ssh://-o@host/a", wantErr: "invalid host"},
		{url: "git@-oProxyCommand=x:a", wantErr: "repository URL"},
		{url: "git@-host:a", wantErr: "invalid host"},
		{url: "https://exa mple.com/x", wantErr: "not a URL"},
		{url: "ftp://example.com/x.git", wantErr: "scheme ftp is not allowed"},
		{url: "https://example.com/x\x1b[2J", wantErr: `\x1b`},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			got, err := CheckGitURL(tc.url, paas.Identity{Name: "u", Admin: tc.admin})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("CheckGitURL = %v, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, []string{tc.want}) {
				t.Fatalf("CheckGitURL = %v, %v; want [%s]", got, err, tc.want)
			}
		})
	}
}

func TestValidateGitRef(t *testing.T) {
	for _, ok := range []string{"main", "release/v2", "v1.0.0", "1", "97e6c72491c7531507bfc5413903e0e00e31e1b0", "feature_x-y"} {
		if err := ValidateGitRef(ok); err != nil {
			t.Errorf("ValidateGitRef(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"--upload-pack=touch /tmp/x", "-b", "a..b", "a b", "x.lock", "/abs", "dir/", "a//b", "a~1", "a^", "a:b", "@{-1}", "a\\b", "é"} {
		if err := ValidateGitRef(bad); err == nil {
			t.Errorf("ValidateGitRef(%q) accepted", bad)
		}
	}
}

func TestGitSyncAndFromArchiveArguments(t *testing.T) {
	tests := []struct {
		name      string
		id        paas.Identity
		args      []string
		stdin     string
		wantCode  int
		wantErr   string
		wantSync  *SyncOptions
		wantArch  *ArchiveOptions
		wantStdin string
	}{
		{name: "sync a URL", id: alice, args: []string{"git:sync", "alpha", "https://example.com/a.git"},
			wantSync: &SyncOptions{URL: "https://example.com/a.git", Protocols: []string{"https"}}},
		{name: "sync a ref with --build", id: alice, args: []string{"git:sync", "--build", "alpha", "git://127.0.0.1/a", "v1.2"},
			wantSync: &SyncOptions{URL: "git://127.0.0.1/a", Ref: "v1.2", Build: true, Protocols: []string{"git"}}},
		{name: "sync --build-if-changes --skip-deploy-branch", id: alice, args: []string{"git:sync", "--build-if-changes", "--skip-deploy-branch", "alpha", "https://e.com/a", "dev"},
			wantSync: &SyncOptions{URL: "https://e.com/a", Ref: "dev", BuildIfChanges: true, SkipDeployBranch: true, Protocols: []string{"https"}}},
		{name: "an option as the ref", id: alice, args: []string{"git:sync", "alpha", "https://e.com/a", "--", "--upload-pack=touch /tmp/x"},
			wantCode: ExitError, wantErr: "invalid git ref"},
		{name: "an option as the URL", id: alice, args: []string{"git:sync", "alpha", "--", "--upload-pack=x"}, wantCode: ExitError, wantErr: "not a URL git may fetch from"},
		{name: "file:// by a user", id: alice, args: []string{"git:sync", "alpha", "file:///data/repos/bravo.git"}, wantCode: ExitError, wantErr: "administrators only"},
		{name: "file:// by an administrator", id: root, args: []string{"git:sync", "alpha", "file:///srv/a.git"},
			wantSync: &SyncOptions{URL: "file:///srv/a.git", Protocols: []string{"file"}}},
		{name: "both build flags", id: alice, args: []string{"git:sync", "--build", "--build-if-changes", "alpha", "https://e.com/a"}, wantCode: ExitError, wantErr: "not both"},
		{name: "sync without a URL", id: alice, args: []string{"git:sync", "alpha"}, wantCode: ExitError, wantErr: "missing arguments"},
		{name: "sync too many", id: alice, args: []string{"git:sync", "alpha", "https://e.com/a", "main", "x"}, wantCode: ExitError, wantErr: "Unexpected argument(s): x"},
		{name: "archive from stdin (-)", id: alice, args: []string{"git:from-archive", "alpha", "-"}, stdin: "TAR",
			wantArch: &ArchiveOptions{Type: "tar", Name: "alice", Email: "alice@paas"}, wantStdin: "TAR"},
		{name: "archive from stdin (Dokku's --)", id: alice, args: []string{"git:from-archive", "--archive-type", "zip", "alpha", "--"}, stdin: "ZIP",
			wantArch: &ArchiveOptions{Type: "zip", Name: "alice", Email: "alice@paas"}, wantStdin: "ZIP"},
		{name: "archive URL with an author", id: alice, args: []string{"git:from-archive", "alpha", "https://e.com/a.tar", "Camila", "camila@example.com"},
			wantArch: &ArchiveOptions{URL: "https://e.com/a.tar", Type: "tar", Name: "Camila", Email: "camila@example.com"}},
		{name: "archive URL of an administrator may be local", id: root, args: []string{"git:from-archive", "--archive-type", "tar.gz", "alpha", "http://127.0.0.1:9/a.tgz"},
			wantArch: &ArchiveOptions{URL: "http://127.0.0.1:9/a.tgz", Type: "tar.gz", Name: "root", Email: "root@paas", Local: true}},
		{name: "archive from a file path", id: alice, args: []string{"git:from-archive", "alpha", "/etc/passwd"}, wantCode: ExitError, wantErr: "use an http(s) URL"},
		{name: "archive of an unknown type", id: alice, args: []string{"git:from-archive", "--archive-type", "rar", "alpha", "-"}, wantCode: ExitError, wantErr: "Invalid archive type"},
		{name: "archive with a bad author", id: alice, args: []string{"git:from-archive", "alpha", "-", "Eve <x>", "e@x"}, wantCode: ExitError, wantErr: "invalid commit author"},
		{name: "archive with half an author", id: alice, args: []string{"git:from-archive", "alpha", "-", "Eve"}, wantCode: ExitError, wantErr: "optionally USER_NAME USER_EMAIL"},
		{name: "archive without a source", id: alice, args: []string{"git:from-archive", "alpha"}, wantCode: ExitError, wantErr: "missing arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newDokkuEnv(t)
			code, _, errOut := e.run(t, tc.id, tc.stdin, tc.args...)
			if code != tc.wantCode || !strings.Contains(errOut, tc.wantErr) {
				t.Fatalf("exit %d %q, want %d %q", code, errOut, tc.wantCode, tc.wantErr)
			}
			switch {
			case tc.wantSync != nil:
				if len(e.sources.syncs) != 1 || !equalSync(e.sources.syncs[0], *tc.wantSync) {
					t.Fatalf("syncs %+v, want %+v", e.sources.syncs, *tc.wantSync)
				}
			case tc.wantArch != nil:
				if len(e.sources.archives) != 1 || e.sources.archives[0] != *tc.wantArch || e.sources.body != tc.wantStdin {
					t.Fatalf("archives %+v (stdin %q), want %+v", e.sources.archives, e.sources.body, *tc.wantArch)
				}
			default:
				if len(e.sources.syncs)+len(e.sources.archives) != 0 {
					t.Fatalf("called on error: %+v %+v", e.sources.syncs, e.sources.archives)
				}
			}
		})
	}
}

func equalSync(a, b SyncOptions) bool {
	return a.URL == b.URL && a.Ref == b.Ref && a.Build == b.Build && a.BuildIfChanges == b.BuildIfChanges &&
		a.SkipDeployBranch == b.SkipDeployBranch && slices.Equal(a.Protocols, b.Protocols)
}

func TestLogsQuietAndFailed(t *testing.T) {
	e := newDokkuEnv(t)
	if code, _, errOut := e.run(t, bob, "", "logs", "bravo", "-q"); code != ExitOK || !e.runtime.logOpts[0].Quiet {
		t.Fatalf("logs -q: %d %q %+v", code, errOut, e.runtime.logOpts)
	}
	e.store.deploys = map[string][]*paas.Deploy{"bravo": {
		{ID: 3, App: "bravo", Reason: "push", State: paas.DeploySucceeded, Log: "v3 ok\n"},
		{ID: 2, App: "bravo", Reason: "config:set", State: paas.DeployFailed, Error: "release v2 failed", Log: "-----> health check failed\n       app said: boom\n"},
		{ID: 1, App: "bravo", Reason: "push", State: paas.DeployFailed, Log: "older\n"},
	}}
	code, out, _ := e.run(t, bob, "", "logs:failed", "bravo")
	if code != ExitOK || !strings.HasPrefix(out, "=====> bravo failed deploy logs\n") || !strings.Contains(out, "app said: boom") || strings.Contains(out, "older") {
		t.Fatalf("logs:failed: %d %q", code, out)
	}
	code, out, errOut := e.run(t, alice, "", "logs:failed", "alpha")
	if code != ExitOK || !strings.Contains(out, "alpha failed deploy logs") || !strings.Contains(errOut, "No failed deploy found for alpha") {
		t.Fatalf("logs:failed without failures: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := e.run(t, alice, "", "logs:failed", "bravo"); code != ExitNotFound || !strings.Contains(errOut, "App bravo does not exist") {
		t.Fatalf("logs:failed of an app alice may not use: %d %q", code, errOut)
	}
	code, out, _ = e.run(t, root, "", "logs:failed", "--all")
	if code != ExitOK || !strings.Contains(out, "alpha failed deploy logs") || !strings.Contains(out, "app said: boom") {
		t.Fatalf("logs:failed --all: %d %q", code, out)
	}
	if code, _, errOut := e.run(t, alice, "", "logs:failed"); code != ExitError || !strings.Contains(errOut, "APP|--all") {
		t.Fatalf("logs:failed alone: %d %q", code, errOut)
	}
}

// bravoReleases gives bravo (bob's, v3 current) three releases, v1's image
// pruned from the registry.
func bravoReleases(e *dokkuEnv) {
	e.store.rels = map[string][]*paas.Release{"bravo": {
		{App: "bravo", Version: 3, Image: paas.Image{Repository: "reg/bravo", Digest: "sha256:c3"}, Processes: []paas.ProcessType{{Name: "web"}}, Commit: "abc"},
		{App: "bravo", Version: 2, Image: paas.Image{Repository: "reg/bravo", Digest: "sha256:c2"}},
		{App: "bravo", Version: 1, Image: paas.Image{Repository: "reg/bravo", Digest: "sha256:c1"}},
	}}
	e.images.missing = map[string]bool{"sha256:c1": true}
	e.store.UpdateApp("bravo", func(a *paas.App) error {
		a.Config = map[string]string{"K": "v"}
		a.Access = []string{"carol"}
		return nil
	})
	e.routingStore.r = map[string]*paas.Routing{"bravo": {
		Domains: []string{"www.example.com"}, Cert: cert([]string{"www.example.com"}, time.Now().Add(time.Hour)),
		Ports: []paas.PortMap{{Scheme: "http", HostPort: 80, ContainerPort: 8080}, {Scheme: "https", HostPort: 443, ContainerPort: 8080}},
	}}
}

func TestAppsRename(t *testing.T) {
	e := newDokkuEnv(t)
	bravoReleases(e)
	code, out, errOut := e.run(t, bob, "", "apps:rename", "bravo", "charlie")
	if code != ExitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if _, err := e.store.App("bravo"); !errors.Is(err, paas.ErrAppNotFound) {
		t.Fatalf("bravo still there: %v", err)
	}
	a, err := e.store.App("charlie")
	if err != nil || a.Owner != "bob" || a.Config["K"] != "v" || !slices.Equal(a.Access, []string{"carol"}) || a.Current != 3 {
		t.Fatalf("charlie = %+v, %v", a, err)
	}
	rels, _ := e.store.Releases("charlie")
	if rels[0].Image.Repository != "reg/charlie" || rels[1].Image.Repository != "reg/charlie" || rels[2].Image.Repository != "reg/bravo" || rels[0].App != "charlie" {
		t.Fatalf("releases after the rename: %+v %+v %+v", rels[0], rels[1], rels[2])
	}
	want := map[string][]string{
		"images copied":   {"sha256:c3>charlie:v3", "sha256:c2>charlie:v2"},
		"repos renamed":   {"bravo>charlie"},
		"rolled out":      {"restart charlie"},
		"routes":          {"charlie"},
		"routes dropped":  {"bravo"},
		"drained":         {"bravo"},
		"services gone":   {"bravo"},
		"images dropped":  {"bravo"},
		"deploy lock":     {"bravo"},
		"store rename":    {"bravo>charlie"},
		"failed releases": nil,
	}
	got := map[string][]string{
		"images copied": e.images.copied, "repos renamed": e.repos.renamed, "rolled out": e.releases.calls,
		"routes": e.routing.published, "routes dropped": e.routing.forgotten, "drained": e.runtime.stopped,
		"services gone": e.runtime.removed, "images dropped": e.images.deleted, "deploy lock": e.pipeline.locked,
		"store rename": e.store.renames, "failed releases": nil,
	}
	for k := range want {
		if !slices.Equal(got[k], want[k]) {
			t.Errorf("%s: %q, want %q", k, got[k], want[k])
		}
	}
	if !strings.Contains(out, "Renamed bravo to charlie: https://www.example.com:8443") || !strings.Contains(out, "git remote set-url paas <host>:charlie") {
		t.Errorf("output:\n%s", out)
	}
}

func TestAppsRenameRefusedOrUndone(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		setup     func(e *dokkuEnv)
		wantCode  int
		wantErr   string
		wantCalls []string // the release operations
	}{
		{name: "a taken name", args: []string{"apps:rename", "bravo", "alpha"}, wantCode: ExitError, wantErr: "Name is already taken: alpha"},
		{name: "an invalid name", args: []string{"apps:rename", "bravo", "Bad_Name"}, wantCode: ExitError, wantErr: "invalid app name"},
		{name: "the same name", args: []string{"apps:rename", "bravo", "bravo"}, wantCode: ExitError, wantErr: "Name is already taken: bravo"},
		{name: "no new name", args: []string{"apps:rename", "bravo"}, wantCode: ExitError, wantErr: "missing arguments"},
		{name: "the current image does not copy", args: []string{"apps:rename", "bravo", "charlie"},
			setup: func(e *dokkuEnv) { e.images.missing["sha256:c3"] = true }, wantCode: ExitError, wantErr: "copy the image of v3"},
		{name: "the repository does not move", args: []string{"apps:rename", "bravo", "charlie"},
			setup: func(e *dokkuEnv) { e.repos.renameErr = errBoom }, wantCode: ExitError, wantErr: "bravo keeps its name and serves as before"},
		{name: "the new deployment fails its checks", args: []string{"apps:rename", "bravo", "charlie"},
			setup:    func(e *dokkuEnv) { e.releases.err = errors.New("health check failed") },
			wantCode: ExitError, wantErr: "health check failed; bravo keeps its name and serves as before", wantCalls: []string{"restart charlie"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newDokkuEnv(t)
			bravoReleases(e)
			if tc.setup != nil {
				tc.setup(e)
			}
			code, _, errOut := e.run(t, bob, "", tc.args...)
			if code != tc.wantCode || !strings.Contains(errOut, tc.wantErr) {
				t.Fatalf("exit %d %q, want %d %q", code, errOut, tc.wantCode, tc.wantErr)
			}
			a, err := e.store.App("bravo")
			if err != nil || a.Current != 3 || a.Config["K"] != "v" {
				t.Fatalf("bravo after a refused rename: %+v %v", a, err)
			}
			if _, err := e.store.App("charlie"); err == nil {
				t.Fatal("charlie exists after a refused rename")
			}
			if rels, _ := e.store.Releases("bravo"); len(rels) != 3 || rels[0].Image.Repository != "reg/bravo" || rels[0].App != "bravo" {
				t.Fatalf("bravo's releases after a refused rename: %+v", rels)
			}
			if len(e.runtime.stopped)+len(e.runtime.removed)+len(e.routing.forgotten) != 0 || slices.Contains(e.images.deleted, "bravo") {
				t.Fatalf("something of bravo was taken down: %v %v %v %v", e.runtime.stopped, e.runtime.removed, e.images.deleted, e.routing.forgotten)
			}
			if len(e.images.copied) > 0 && !slices.Equal(e.images.deleted, []string{"charlie"}) {
				t.Fatalf("the copied images were not dropped: %q", e.images.deleted)
			}
			if a.RenamedFrom != "" {
				t.Fatalf("bravo is marked as renamed from %q", a.RenamedFrom)
			}
			if !slices.Equal(e.releases.calls, tc.wantCalls) {
				t.Fatalf("release operations %q, want %q", e.releases.calls, tc.wantCalls)
			}
			if len(e.repos.renamed)%2 != 0 {
				t.Fatalf("the repository stayed renamed: %q", e.repos.renamed)
			}
		})
	}
	t.Run("--skip-deploy stops the app under its new name", func(t *testing.T) {
		e := newDokkuEnv(t)
		bravoReleases(e)
		if code, _, errOut := e.run(t, bob, "", "apps:rename", "--skip-deploy", "bravo", "charlie"); code != ExitOK {
			t.Fatalf("exit %d %q", code, errOut)
		}
		if a, _ := e.store.App("charlie"); !a.Stopped || len(e.releases.calls) != 0 || !slices.Equal(e.runtime.removed, []string{"bravo"}) {
			t.Fatalf("charlie %+v, calls %q, removed %q", a, e.releases.calls, e.runtime.removed)
		}
	})
	t.Run("an undeployed app", func(t *testing.T) {
		e := newDokkuEnv(t)
		if code, _, errOut := e.run(t, alice, "", "apps:rename", "alpha", "alpha2"); code != ExitOK || len(e.releases.calls) != 0 {
			t.Fatalf("exit %d %q, calls %q", code, errOut, e.releases.calls)
		}
		if a, err := e.store.App("alpha2"); err != nil || a.Config["GREETING"] != "hi" {
			t.Fatalf("alpha2 %+v %v", a, err)
		}
	})
}

// A rename that paasd did not see to the end is finished at start.
func TestFinishRenames(t *testing.T) {
	t.Run("the new name serves nowhere: deployed, then the old name goes", func(t *testing.T) {
		e := newDokkuEnv(t)
		bravoReleases(e)
		e.store.RenameApp("bravo", "charlie", nil) // killed right after the store moved
		e.runtime.status = []scheduler.ProcessStatus{}
		if err := e.platform.FinishRenames(context.Background(), io.Discard); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(e.releases.calls, []string{"restart charlie"}) || !slices.Equal(e.repos.renamed, []string{"bravo>charlie"}) ||
			!slices.Equal(e.runtime.stopped, []string{"bravo"}) || !slices.Equal(e.runtime.removed, []string{"bravo"}) ||
			!slices.Equal(e.images.deleted, []string{"bravo"}) || !slices.Equal(e.routing.forgotten, []string{"bravo"}) {
			t.Fatalf("calls %q repos %q stopped %q removed %q images %q forgotten %q", e.releases.calls, e.repos.renamed, e.runtime.stopped, e.runtime.removed, e.images.deleted, e.routing.forgotten)
		}
		if a, _ := e.store.App("charlie"); a.RenamedFrom != "" {
			t.Fatalf("still marked: %+v", a)
		}
		// nothing left to do at the next start
		if err := e.platform.FinishRenames(context.Background(), io.Discard); err != nil || len(e.releases.calls) != 1 {
			t.Fatalf("again: %v %q", err, e.releases.calls)
		}
	})
	t.Run("the old name is an app again: it is left alone", func(t *testing.T) {
		e := newDokkuEnv(t)
		bravoReleases(e)
		e.store.RenameApp("bravo", "charlie", nil)
		e.store.CreateApp(&paas.App{Name: "bravo", Owner: "dave"})
		if err := e.platform.FinishRenames(context.Background(), io.Discard); err != nil {
			t.Fatal(err)
		}
		if len(e.runtime.stopped)+len(e.runtime.removed)+len(e.images.deleted) != 0 || len(e.releases.calls) != 0 {
			t.Fatalf("touched the new bravo: %q %q %q %q", e.runtime.stopped, e.runtime.removed, e.images.deleted, e.releases.calls)
		}
	})
}

func TestAppsClone(t *testing.T) {
	e := newDokkuEnv(t)
	bravoReleases(e)
	limits := paas.ResourceSettings{Limits: map[string]paas.Resources{paas.ResourceDefault: {MemoryBytes: 64 << 20}}}
	if _, err := e.store.UpdateApp("bravo", func(a *paas.App) error { a.Resources = limits; return nil }); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := e.run(t, bob, "", "apps:clone", "bravo", "bravo-staging")
	if code != ExitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	a, err := e.store.App("bravo-staging")
	if err != nil || a.Owner != "bob" || !maps.Equal(a.Config, map[string]string{"K": "v"}) || len(a.Access) != 0 {
		t.Fatalf("clone %+v %v", a, err)
	}
	if !maps.Equal(a.Resources.Limits, limits.Limits) {
		t.Fatalf("clone's resource limits %+v, want %+v", a.Resources, limits)
	}
	if orig, _ := e.store.App("bravo"); orig.Current != 3 || orig.Config["K"] != "v" {
		t.Fatalf("the original changed: %+v", orig)
	}
	r, _ := e.routingStore.Routing("bravo-staging")
	if len(r.Domains) != 0 || r.Cert != nil || !slices.Equal(r.Ports, []paas.PortMap{{Scheme: "http", HostPort: 80, ContainerPort: 8080}}) {
		t.Fatalf("clone's routing %+v: want the http port map only, no domains or certificate", r)
	}
	if !slices.Equal(e.repos.copied, []string{"bravo>bravo-staging"}) || !slices.Equal(e.images.copied, []string{"sha256:c3>bravo-staging:v1-clone"}) {
		t.Fatalf("repos %q images %q", e.repos.copied, e.images.copied)
	}
	if want := []string{`deploy-from bravo-staging bravo v3 reg/bravo-staging@sha256:c3 "apps:clone bravo v3"`}; !slices.Equal(e.releases.calls, want) {
		t.Fatalf("release operations %q, want %q", e.releases.calls, want)
	}

	t.Run("a taken name", func(t *testing.T) {
		e := newDokkuEnv(t)
		bravoReleases(e)
		if code, _, errOut := e.run(t, bob, "", "apps:clone", "bravo", "alpha"); code != ExitError || !strings.Contains(errOut, "Name is already taken: alpha") {
			t.Fatalf("exit %d %q", code, errOut)
		}
		if code, _, errOut := e.run(t, bob, "", "apps:clone", "--ignore-existing", "bravo", "alpha"); code != ExitOK || !strings.Contains(errOut, "nothing was cloned") {
			t.Fatalf("--ignore-existing: exit %d %q", code, errOut)
		}
		if a, _ := e.store.App("alpha"); a.Owner != "alice" || len(e.releases.calls) != 0 {
			t.Fatalf("alpha changed: %+v %q", a, e.releases.calls)
		}
	})
	t.Run("--skip-deploy", func(t *testing.T) {
		e := newDokkuEnv(t)
		bravoReleases(e)
		if code, _, errOut := e.run(t, bob, "", "apps:clone", "--skip-deploy", "bravo", "b2"); code != ExitOK || len(e.releases.calls) != 0 {
			t.Fatalf("exit %d %q calls %q", code, errOut, e.releases.calls)
		}
		if a, err := e.store.App("b2"); err != nil || a.Current != 0 || a.Config["K"] != "v" {
			t.Fatalf("b2 %+v %v", a, err)
		}
	})
	t.Run("a failed deploy removes the clone", func(t *testing.T) {
		e := newDokkuEnv(t)
		bravoReleases(e)
		e.releases.err = errors.New("health check failed")
		code, _, errOut := e.run(t, bob, "", "apps:clone", "bravo", "b2")
		if code != ExitError || !strings.Contains(errOut, "health check failed; the clone b2 was removed") {
			t.Fatalf("exit %d %q", code, errOut)
		}
		if _, err := e.store.App("b2"); !errors.Is(err, paas.ErrAppNotFound) {
			t.Fatalf("b2 still there: %v", err)
		}
		if !slices.Equal(e.repos.removed, []string{"b2"}) || !slices.Equal(e.images.deleted, []string{"b2"}) || !slices.Equal(e.routing.forgotten, []string{"b2"}) {
			t.Fatalf("left behind: repos %q images %q routing %q", e.repos.removed, e.images.deleted, e.routing.forgotten)
		}
	})
}

func TestRenameAndCloneTriggers(t *testing.T) {
	e, demo, _ := newPluginEnv(t)
	if code, _, errOut := e.run(t, alice, "", "apps:clone", "alpha", "alpha-copy"); code != ExitOK {
		t.Fatalf("clone: %d %q", code, errOut)
	}
	if code, _, errOut := e.run(t, alice, "", "apps:rename", "alpha", "alpha2"); code != ExitOK {
		t.Fatalf("rename: %d %q", code, errOut)
	}
	// refused: nothing fires
	e.run(t, alice, "", "apps:rename", "alpha2", "alpha-copy")
	e.run(t, alice, "", "apps:clone", "--ignore-existing", "alpha2", "alpha-copy")
	want := []string{"post-app-clone alpha alpha-copy by alice", "post-app-rename alpha alpha2 by alice"}
	if got := demo.events(); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}
