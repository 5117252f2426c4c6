package router

import (
	"strings"
	"testing"
)

// TestRequestLimits: malformed chunked framing from a client is a 400 (the
// client's fault, not the app's: never a 502), and request heads are held
// to nginx's default sizes (large_client_header_buffers 4 8k): a request
// line over 8 KB is a 414, a header line over 8 KB or a head over 32 KB a
// 431, and nothing of such a request reaches the app.
func TestRequestLimits(t *testing.T) {
	_, addr := rawRouter(t, Options{})
	const host = "Host: alpha.example.test\r\n"
	post := "POST /c HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n"
	header := func(name string, n int) string { return name + ": " + strings.Repeat("h", n) + "\r\n" }
	tests := []struct {
		name   string
		req    string
		status string // the start of the status line
		body   string // in the response, when not ""
	}{
		{"chunked body", post + "3\r\nabc\r\n0\r\n\r\n", "HTTP/1.1 200 OK", "POST /c abc"},
		{"chunk-size line ending in a bare LF", post + "3\nabc\r\n0\r\n\r\n", "HTTP/1.1 400 Bad Request", ""},
		{"last chunk ending in a bare LF", post + "3\r\nabc\r\n0\n\r\n", "HTTP/1.1 400 Bad Request", ""},
		{"chunk data not followed by CRLF", post + "3\r\nabcd\r\n0\r\n\r\n", "HTTP/1.1 400 Bad Request", ""},
		{"chunk size that is not hex", post + "zz\r\nabc\r\n0\r\n\r\n", "HTTP/1.1 400 Bad Request", ""},
		{"request line of 8 KB", "GET /" + strings.Repeat("p", 8<<10-len("GET / HTTP/1.1\r\n")) + " HTTP/1.1\r\n" + host + "\r\n", "HTTP/1.1 200 OK", "GET /ppp"},
		{"request line over 8 KB", "GET /" + strings.Repeat("p", 8<<10) + " HTTP/1.1\r\n" + host + "\r\n", "HTTP/1.1 414 Request URI Too Long", ""},
		// (nginx says 414 here; net/http, which reads heads over 8 KB, 431)
		{"request line over 32 KB", "GET /" + strings.Repeat("p", 40<<10) + " HTTP/1.1\r\n" + host + "\r\n", "HTTP/1.1 431 Request Header Fields Too Large", ""},
		{"header line of 8 KB", "GET /h HTTP/1.1\r\n" + host + header("X-Big", 8<<10-len("X-Big: \r\n")) + "\r\n", "HTTP/1.1 200 OK", "GET /h"},
		{"header line over 8 KB", "GET /h HTTP/1.1\r\n" + host + header("X-Big", 8<<10) + "\r\n", "HTTP/1.1 431 Request Header Fields Too Large", ""},
		{"head of 31 KB in lines under 8 KB", "GET /h HTTP/1.1\r\n" + host + header("X-A", 7<<10) + header("X-B", 7<<10) + header("X-C", 7<<10) + header("X-D", 7<<10) + header("X-E", 3<<10) + "\r\n", "HTTP/1.1 200 OK", "GET /h"},
		{"head over 32 KB in lines under 8 KB", "GET /h HTTP/1.1\r\n" + host + header("X-A", 7<<10) + header("X-B", 7<<10) + header("X-C", 7<<10) + header("X-D", 7<<10) + header("X-E", 5<<10) + "\r\n", "HTTP/1.1 431 Request Header Fields Too Large", ""},
		{"head far over 32 KB", "GET /h HTTP/1.1\r\n" + host + strings.Repeat(header("X-A", 7<<10), 40) + "\r\n", "HTTP/1.1 431 Request Header Fields Too Large", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := roundTripRaw(t, addr, tc.req)
			if !strings.HasPrefix(out, tc.status) {
				t.Fatalf("response %q, want %q", trimBig([]byte(out)), tc.status)
			}
			if tc.body != "" && !strings.Contains(out, tc.body) {
				t.Fatalf("response %q does not contain %q", trimBig([]byte(out)), tc.body)
			}
			if tc.body == "" && strings.Contains(out, "POST /c") {
				t.Fatalf("the app answered: %q", trimBig([]byte(out)))
			}
		})
	}
}
