package commands

import (
	"context"
	"io"
	"strings"
	"testing"

	"paas/internal/paas"
)

// fakeRouting is a Routing with fixed ports and domain.
type fakeRouting struct {
	published, forgotten []string
	globals              func() []string // the global domains; paas.test when nil
}

var _ Routing = (*fakeRouting)(nil)

func (f *fakeRouting) Domain() string                { return "paas.test" }
func (f *fakeRouting) DefaultHost(app string) string { return app + ".paas.test" }
func (f *fakeRouting) HTTPPort() int                 { return 8080 }
func (f *fakeRouting) HTTPSPort() int                { return 8443 }
func (f *fakeRouting) ACMENames(app string, r *paas.Routing) []string {
	return []string{app + ".paas.test"}
}
func (f *fakeRouting) Publish(_ context.Context, app string) error {
	f.published = append(f.published, app)
	return nil
}
func (f *fakeRouting) PublishGlobal(context.Context) error            { return nil }
func (f *fakeRouting) Issue(context.Context, string, io.Writer) error { return nil }
func (f *fakeRouting) Forget(_ context.Context, app string) error {
	f.forgotten = append(f.forgotten, app)
	return nil
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1024": 1024, "512k": 512 << 10, "10m": 10 << 20, "1G": 1 << 30} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "m", "-1", "1t", "ten", "99999999999g"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}

func TestPortMaps(t *testing.T) {
	p := &Platform{Routing: &fakeRouting{}}
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"http:80:5000"}, ""},
		{[]string{"http:8080:5000", "https:8443:5000"}, ""},
		{[]string{"https:443:5000"}, ""},
		{[]string{"http:9000:5000"}, "listens for http on port 8080"},
		{[]string{"http:80:5000", "https:443:6000"}, "same container port"},
		{[]string{"udp:80:5000"}, "scheme"},
	} {
		_, err := p.portMaps(tc.args)
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("portMaps(%v) = %v, want %q", tc.args, err, tc.err)
		}
	}
}

func TestParseDomains(t *testing.T) {
	p := &Platform{Routing: &fakeRouting{}}
	got, err := p.parseDomains("web", []string{"App.Example.COM.", "*.preview.example.com", "web.paas.test", "a.b.paas.test"})
	if err != nil || strings.Join(got, " ") != "app.example.com *.preview.example.com web.paas.test a.b.paas.test" {
		t.Errorf("parseDomains = %v, %v", got, err)
	}
	for _, bad := range []string{"*.paas.test", "other.paas.test", "x_y.example.com", "\x1b[31m.example.com"} {
		if _, err := p.parseDomains("web", []string{bad}); err == nil {
			t.Errorf("parseDomains(%q) accepted", bad)
		} else if strings.ContainsRune(err.Error(), 0x1b) {
			t.Errorf("error for %q carries a raw escape: %q", bad, err)
		}
	}
}
