// hello-go is the quickstart's source app: no Dockerfile, no binary; the
// buildpacks builder compiles it. It greets with $GREETING on $PORT.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
)

func main() {
	port := os.Getenv("PORT")
	log.Printf("hello-go listening on %s", port)
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		greeting := os.Getenv("GREETING")
		if greeting == "" {
			greeting = "hello"
		}
		fmt.Fprintf(w, "%s from a buildpack\n", greeting)
	})
	log.Fatal(http.ListenAndServe(":"+port, nil))
}
