package router

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"paas/router/engine"
)

// slogJSONString is how slog's JSON handler writes s.
func slogJSONString(s string) string {
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == "time" || a.Key == "level" || a.Key == "msg" {
				return slog.Attr{}
			}
			return a
		},
	})).Info("", "s", s)
	out := buf.String() // {"s":"..."}\n
	return out[len(`{"s":`) : len(out)-2]
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"b\s`, "tab\tnl\nret\r", "\x00\x01\x1f\x7f", "<a href='&'>", "é\u2028\u2029 ✓", "bad \xff\xfe utf8", "\xe2\x82"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := string(appendJSONString(nil, s))
		if gotBytes := string(appendJSONString(nil, []byte(s))); gotBytes != got {
			t.Errorf("appendJSONString of %q: %s as a string, %s as bytes", s, got, gotBytes)
		}
		if want := slogJSONString(s); got != want {
			t.Errorf("appendJSONString(%q) = %s, slog writes %s", s, got, want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("appendJSONString(%q) = %s: not valid JSON", s, got)
		}
	})
}

// A line written to AccessLogOut is the line Log's JSON handler would have
// written, but for the time.
func TestAccessLogOutMatchesSlog(t *testing.T) {
	l := engine.RequestLog{Method: "GET", Host: []byte("Alpha.example.test:8080"), Path: []byte("/a b/\"q\"/\xff"), Status: 0,
		Start: time.Now().Add(-1234567 * time.Microsecond), Bytes: 12345, ID: []byte("id-1"), App: "alpha", Backend: "10.0.0.5:5000"}
	var viaSlog, direct bytes.Buffer
	(&Router{opts: Options{}, log: slog.New(slog.NewJSONHandler(&viaSlog, nil)).With("component", "router")}).logRequest(context.Background(), l)
	(&Router{opts: Options{AccessLogOut: &direct}}).logRequest(context.Background(), l)
	decode := func(b []byte) map[string]any {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		return m
	}
	a, b := decode(viaSlog.Bytes()), decode(direct.Bytes())
	for _, m := range []map[string]any{a, b} {
		if _, err := time.Parse(time.RFC3339Nano, m["time"].(string)); err != nil {
			t.Errorf("time: %v", err)
		}
		if d := m["duration_ms"].(float64); d < 1234 || d > 60000 {
			t.Errorf("duration_ms = %v, want about 1234.567", d)
		}
		delete(m, "time")
		delete(m, "duration_ms")
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Errorf("through slog:\n%s\nencoded by the router:\n%s", ja, jb)
	}
	// Same keys in the same order: compare the raw lines with time and
	// duration cut out.
	cut := func(line string) string {
		i, j := bytes.Index([]byte(line), []byte(`,"level"`)), bytes.Index([]byte(line), []byte(`"duration_ms":`))
		k := j + bytes.IndexByte([]byte(line[j:]), ',')
		return line[i:j] + line[k:]
	}
	if x, y := cut(viaSlog.String()), cut(direct.String()); x != y {
		t.Errorf("lines differ:\n%s\n%s", x, y)
	}
}
