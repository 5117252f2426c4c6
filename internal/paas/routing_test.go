package paas

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateDomain(t *testing.T) {
	for _, tc := range []struct {
		name, why string // why: "" when valid, else part of the message
	}{
		{"app.example.com", ""},
		{"*.preview.example.com", ""},
		{"xn--bcher-kva.example", ""},
		{"a-b.example.com", ""},
		{"", "empty"},
		{"localhost", "fully qualified"},
		{"*.com", "fully qualified"},
		{"bad_name.example.com", "letters, digits"},
		{"-a.example.com", "dash"},
		{"a-.example.com", "dash"},
		{"a..example.com", "1 to 63"},
		{".example.com", "1 to 63"},
		{"a.*.example.com", "whole first label"},
		{"**.example.com", "whole first label"},
		{"10.0.0.1", "IP address"},
		{"app.example.com/x", "letters, digits"},
		{"app example.com", "letters, digits"},
		{strings.Repeat("a", 64) + ".example.com", "1 to 63"},
		{strings.Repeat("a.", 127) + "com", "253"},
	} {
		err := ValidateDomain(tc.name)
		switch {
		case tc.why == "" && err != nil:
			t.Errorf("ValidateDomain(%q) = %v, want nil", tc.name, err)
		case tc.why != "" && (err == nil || !strings.Contains(err.Error(), tc.why) || !errors.Is(err, ErrInvalidDomain)):
			t.Errorf("ValidateDomain(%q) = %v, want an ErrInvalidDomain saying %q", tc.name, err, tc.why)
		}
	}
}

func TestParsePortMap(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want PortMap
		err  string
	}{
		{"http:80:5000", PortMap{"http", 80, 5000}, ""},
		{"https:443:8080", PortMap{"https", 443, 8080}, ""},
		{"tcp:80:5000", PortMap{}, "scheme"},
		{"http:80", PortMap{}, "SCHEME:HOST-PORT:CONTAINER-PORT"},
		{"http:0:5000", PortMap{}, "not a port"},
		{"http:80:65536", PortMap{}, "not a port"},
		{"http:80:x", PortMap{}, "not a port"},
	} {
		got, err := ParsePortMap(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParsePortMap(%q) = %v, %v; want error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want || got.String() != tc.in {
			t.Errorf("ParsePortMap(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}
