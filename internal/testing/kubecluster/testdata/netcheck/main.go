// Command netcheck runs in the kubecluster tests' pods (a FROM-scratch
// image): "netcheck serve ADDR" answers "ok" on / and, on /dial?addr=A,
// whether a TCP dial from this pod to A succeeds; "netcheck echo" prints a
// greeting, then "got: LINE" for each line of stdin.
package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: netcheck serve ADDR | echo")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "echo":
		fmt.Println("hello from kubecluster")
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			fmt.Println("got: " + sc.Text())
		}
	case "serve":
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
		http.HandleFunc("/dial", func(w http.ResponseWriter, r *http.Request) {
			conn, err := net.DialTimeout("tcp", r.URL.Query().Get("addr"), time.Second)
			if err != nil {
				fmt.Fprintf(w, "fail: %v\n", err)
				return
			}
			conn.Close()
			fmt.Fprintln(w, "ok")
		})
		if err := http.ListenAndServe(os.Args[2], nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	default:
		fmt.Fprintf(os.Stderr, "netcheck: unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}
