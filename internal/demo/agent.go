package demo

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Agent is the sandboxed side of the demo (`cork demo-agent`): it reads
// its credential from the sandbox home, streams an answer through the
// proxy, tries a host the policy does not allow, and reports what it held.
func Agent(ctx context.Context, out io.Writer) error {
	defer report(out)
	home, _ := os.UserHomeDir()
	tokenPath := os.Getenv("LLM_TOKEN_FILE")
	if tokenPath == "" {
		tokenPath = filepath.Join(home, tokenFile)
	}
	raw, err := os.ReadFile(tokenPath)
	if err != nil {
		return fmt.Errorf("read credential: %w", err)
	}
	token := strings.TrimSpace(string(raw))
	fmt.Fprintf(out, "my credential is %s… (all I have)\n", token[:14])

	// The client finds the proxy in HTTPS_PROXY and trusts the session CA
	// through SSL_CERT_FILE, as any Go program would.
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment}, Timeout: 30 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, os.Getenv("LLM_API_URL"), strings.NewReader(`{"prompt":"say hello"}`))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	fmt.Fprintf(out, "POST %s (streaming)\n", req.URL)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("chat: %s", resp.Status)
	}
	var answer strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		answer.WriteString(data)
		fmt.Fprintf(out, "  event %q\n", data)
	}
	fmt.Fprintf(out, "answer: %s\n", answer.String())

	status, reason, body, err := tryConnect(os.Getenv("HTTPS_PROXY"), deniedHost+":443")
	if err != nil {
		return fmt.Errorf("connect %s: %w", deniedHost, err)
	}
	fmt.Fprintf(out, "CONNECT %s:443 → %d %s: %s\n", deniedHost, status, reason, body)
	return nil
}

// tryConnect asks the proxy for a tunnel and returns its answer: status,
// X-Cork-Deny-Reason and the first line of the body.
func tryConnect(proxyURL, target string) (int, string, string, error) {
	u, err := url.Parse(proxyURL)
	if err != nil {
		return 0, "", "", err
	}
	c, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		return 0, "", "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	auth := ""
	if u.User != nil {
		// The proxy serves only its sandbox: the session credential is
		// in the proxy URL, as for every client.
		pass, _ := u.User.Password()
		auth = "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pass)) + "\r\n"
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", target, target, auth)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return resp.StatusCode, resp.Header.Get("X-Cork-Deny-Reason"), line, nil
}

// report prints everything the agent held — its environment, arguments
// and every file under its home — for the demo's leak check.
func report(out io.Writer) {
	inv := inventory{Env: os.Environ(), Args: os.Args, Files: map[string]string{}}
	if home, err := os.UserHomeDir(); err == nil {
		filepath.WalkDir(home, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if b, err := os.ReadFile(p); err == nil {
					inv.Files[p] = string(b)
				}
			}
			return nil
		})
	}
	b, _ := json.Marshal(inv)
	fmt.Fprintf(out, "%s%s\n", inventoryPrefix, base64.StdEncoding.EncodeToString(b))
}
