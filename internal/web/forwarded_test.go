package web

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestFromRouter(t *testing.T) {
	for _, tt := range []struct {
		name string
		fwd  []string
		want string
	}{
		{"no header: the socket's address", nil, "@"},
		{"the router's address", []string{"203.0.113.7"}, "203.0.113.7"},
		{"the last of a list", []string{"198.51.100.1, 203.0.113.7"}, "203.0.113.7"},
		{"the last of several headers", []string{"198.51.100.1", "2001:db8::1"}, "2001:db8::1"},
		{"not an address", []string{"203.0.113.7, evil<script>"}, "@"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			h := fromRouter(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.RemoteAddr }), nil)
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = "@"
			for _, v := range tt.fwd {
				r.Header.Add("X-Forwarded-For", v)
			}
			h.ServeHTTP(httptest.NewRecorder(), r)
			if got != tt.want {
				t.Fatalf("RemoteAddr %q, want %q", got, tt.want)
			}
		})
	}
}
