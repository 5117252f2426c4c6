package directory

import (
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// shape is a filter's tree without its values: an injected value would add
// or change nodes.
func shape(p *ber.Packet) string {
	s := "(" + string(rune('a'+p.Tag))
	for _, c := range p.Children {
		if c.ClassType == ber.ClassContext || len(c.Children) > 0 {
			s += shape(c)
		}
	}
	return s + ")"
}

// FuzzFilters: whatever a key or user name holds, the filters built from them
// compile, keep the shape of the template, and carry the value back intact.
func FuzzFilters(f *testing.F) {
	for _, s := range []string{"ssh-ed25519 AAAA", "*", ")(uid=*", "x)(|(memberUid=*", "\x00", "\\2a", "(", "é\u009b", "a*b*c"} {
		f.Add(s)
	}
	c, err := New(Config{URL: "ldap://127.0.0.1", BaseDN: "dc=example,dc=com"})
	if err != nil {
		f.Fatal(err)
	}
	keyShape := mustShape(f, c.keyFilter("x"))
	groupShape := mustShape(f, c.groupFilter("x", "x"))
	f.Fuzz(func(t *testing.T, v string) {
		for _, tc := range []struct{ filter, shape string }{
			{c.keyFilter(v), keyShape},
			{c.groupFilter(v, v), groupShape},
		} {
			p, err := ldap.CompileFilter(tc.filter)
			if err != nil {
				t.Fatalf("filter %q does not compile: %v", tc.filter, err)
			}
			if got := shape(p); got != tc.shape {
				t.Fatalf("value %q changed the filter's shape: %s, want %s", v, got, tc.shape)
			}
		}
	})
}

func mustShape(f *testing.F, filter string) string {
	p, err := ldap.CompileFilter(filter)
	if err != nil {
		f.Fatal(err)
	}
	return shape(p)
}
