// Command fakeagent stands in for an AI agent inside a cork sandbox in
// end-to-end tests. Its output is line-oriented for the test to parse:
//
//	fakeagent probe [flags]  call the API through the proxy, probe direct
//	                         routes, try a denied host, dump env and files
//	fakeagent sleep          print READY and wait for SIGTERM or SIGINT
//
// It judges nothing: the test does.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: fakeagent probe|sleep [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "probe":
		os.Exit(probe(os.Args[2:]))
	case "sleep":
		sleep()
	default:
		fmt.Fprintf(os.Stderr, "fakeagent: unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}

func sleep() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	fmt.Println("READY")
	s := <-sig
	fmt.Printf("SIGNAL %v\n", s)
	os.Exit(0)
}

// probe is the sandboxed agent of the docker end-to-end tests: a script of
// checks in the order the tests read its output, one line each (the
// proxied call, the direct dials that must fail, the denied host, the
// pause for a refresh, the dump). It is long because it is a script; its
// steps share the flags and the client.
func probe(args []string) int {
	fs := flag.NewFlagSet("probe", flag.ExitOnError)
	api := fs.String("api", "", "URL to GET through the proxy with the placeholder bearer")
	tokenEnv := fs.String("token-env", "", "variable holding the (dummy) bearer token")
	tokenFile := fs.String("token-file", "", "JSON file holding the (dummy) bearer token instead, at -token-field")
	tokenField := fs.String("token-field", "tokens.access_token", "dotted path of the token in -token-file")
	awaitChange := fs.Duration("await-change", 0, "after the checks, print PAUSE and call -api until its answer changes (a refreshed token), at most this long")
	direct := fs.String("direct", "", "comma-separated host:port to dial without the proxy")
	gwPort := fs.Int("gateway-port", 0, "also dial the default gateway on this port, without the proxy")
	denied := fs.String("denied", "", "URL outside the policy to GET through the proxy")
	pause := fs.String("pause", "", "after the checks, print PAUSE and wait for this file, then call -api again")
	dumpAll := fs.Bool("dump", false, "print the environment and every file under HOME, /workspace and /cork-ca")
	exit := fs.Int("exit", 0, "exit status")
	fs.Parse(args)

	client := &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment,
			// The CONNECT answer of a denial carries the reason header.
			OnProxyConnectResponse: func(_ context.Context, _ *url.URL, req *http.Request, resp *http.Response) error {
				if resp.StatusCode != http.StatusOK {
					fmt.Printf("CONNECT %s status=%d reason=%s\n", req.Host, resp.StatusCode, resp.Header.Get("X-Cork-Deny-Reason"))
				}
				return nil
			},
		},
	}
	bearer := os.Getenv(*tokenEnv)
	if *tokenFile != "" {
		bearer = jsonField(*tokenFile, *tokenField)
	}
	get := func() (string, error) {
		req, _ := http.NewRequest("GET", *api, nil)
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		return fmt.Sprintf("status=%d body=%s", resp.StatusCode, strings.TrimSpace(string(body))), nil
	}
	var first string
	call := func(label string) {
		out, err := get()
		if err != nil {
			fmt.Printf("%s err=%v\n", label, err)
			return
		}
		fmt.Printf("%s %s\n", label, out)
		if first == "" {
			first = out
		}
	}
	if *api != "" {
		call("API")
	}

	targets := splitList(*direct)
	if *gwPort != 0 {
		if gw, err := defaultGateway(); err == nil {
			targets = append(targets, net.JoinHostPort(gw, strconv.Itoa(*gwPort)))
		} else {
			fmt.Printf("GATEWAY none (%v)\n", err)
		}
	}
	for _, t := range targets {
		c, err := net.DialTimeout("tcp", t, 3*time.Second)
		if err != nil {
			fmt.Printf("DIRECT %s err=%v\n", t, err)
			continue
		}
		c.Close()
		fmt.Printf("DIRECT %s connected\n", t)
	}
	if len(targets) > 0 && *api != "" {
		// The API without the proxy, by name: TLS over a direct dial.
		u := strings.TrimPrefix(*api, "https://")
		host, _, _ := strings.Cut(u, "/")
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", net.JoinHostPort(host, "443"), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			fmt.Printf("DIRECT %s err=%v\n", host, err)
		} else {
			c.Close()
			fmt.Printf("DIRECT %s connected\n", host)
		}
	}

	if *denied != "" {
		resp, err := client.Get(*denied)
		if err != nil {
			fmt.Printf("DENIED err=%v\n", err)
		} else {
			resp.Body.Close()
			fmt.Printf("DENIED status=%d reason=%s\n", resp.StatusCode, resp.Header.Get("X-Cork-Deny-Reason"))
		}
	}

	if *dumpAll {
		fmt.Printf("USER uid=%d gid=%d\n", os.Getuid(), os.Getgid())
		fmt.Printf("ARGS %q\n", os.Args)
		env := os.Environ()
		sort.Strings(env)
		for _, kv := range env {
			fmt.Printf("ENV %s\n", kv)
		}
		for _, root := range []string{os.Getenv("HOME"), "/workspace", "/cork-ca"} {
			dump(root)
		}
	}
	if *awaitChange > 0 {
		fmt.Println("PAUSE")
		deadline := time.Now().Add(*awaitChange)
		for {
			out, err := get()
			if (err == nil && out != first) || time.Now().After(deadline) {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		call("API2")
	}
	if *pause != "" {
		fmt.Println("PAUSE")
		for i := 0; i < 1200; i++ {
			if _, err := os.Stat(*pause); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if *api != "" {
			call("API2")
		}
	}
	fmt.Println("DONE")
	return *exit
}

// jsonField is the string at a dotted path in a JSON file, or "".
func jsonField(file, path string) string {
	data, err := os.ReadFile(file)
	if err != nil {
		fmt.Printf("TOKENFILE err=%v\n", err)
		return ""
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		fmt.Printf("TOKENFILE err=%v\n", err)
		return ""
	}
	for _, k := range strings.Split(path, ".") {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	s, _ := v.(string)
	return s
}

// dump prints every regular file under root with its content quoted.
func dump(root string) {
	if root == "" {
		return
	}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			fmt.Printf("FILEERR %s %v\n", p, err)
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			fmt.Printf("FILEERR %s %v\n", p, err)
			return nil
		}
		fmt.Printf("FILE %s %q\n", p, data)
		if info, err := d.Info(); err == nil {
			fmt.Printf("MODE %s %04o\n", p, info.Mode().Perm())
		}
		return nil
	})
}

// defaultGateway reads the IPv4 default route from /proc/net/route.
func defaultGateway() (string, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || fields[1] != "00000000" {
			continue
		}
		v, err := strconv.ParseUint(fields[2], 16, 32)
		if err != nil {
			continue
		}
		// Little-endian hex.
		return net.IPv4(byte(v), byte(v>>8), byte(v>>16), byte(v>>24)).String(), nil
	}
	return "", fmt.Errorf("no default route")
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
