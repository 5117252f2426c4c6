package signin_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"paas/internal/signin"
)

// The web server of paas.DOMAIN mounts the Service at /auth/, asks it who
// a request's browser session is, gives its pages the session's CSRF token
// and headers, and has state-changing requests checked.
func Example() {
	svc, err := signin.New(signin.Config{BaseURL: "https://paas.example.com", Key: []byte(strings.Repeat("k", 32))})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/auth/", svc)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		id, ok, _ := svc.Authenticate(r)
		if !ok {
			http.Redirect(w, r, signin.PathLogin+"?return_to="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		signin.SecureHeaders(w.Header())
		fmt.Fprintf(w, `<form method="post" action="/apps/restart"><input type="hidden" name="%s" value="%s">…`,
			signin.CSRFField, svc.CSRFToken(r)) // html/template in real pages
		_ = id
	})
	// Every request that may change state and carries the session cookie
	// must carry its CSRF token too.
	handler := svc.RequireCSRF(mux)
	_ = handler
	fmt.Println(svc.Methods())
	// Output: [link]
}
