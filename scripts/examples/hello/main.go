// hello is the quickstart's app: a static HTTP server that greets with $GREETING.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
)

func main() {
	port := os.Getenv("PORT")
	log.Printf("hello listening on %s", port)
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("%s %s", r.Method, r.URL.Path)
		greeting := os.Getenv("GREETING")
		if greeting == "" {
			greeting = "hello"
		}
		fmt.Fprintf(w, "%s from paas\n", greeting)
	})
	log.Fatal(http.ListenAndServe(":"+port, nil))
}
