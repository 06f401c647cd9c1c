//go:build ignore

// gen writes tokens.json: fake GitHub tokens of every shape gh and git
// meet, for the github and generic profiles' tests. None was ever issued by
// anyone; each carries the marker REAL after its prefix.
//
//	go run ./testdata/github/gen.go   (from the repository root)
package main

import (
	"encoding/json"
	"log"
	"math/rand/v2"
	"os"
)

var rng = rand.New(rand.NewPCG(5, 11))

// filler returns n deterministic base62 characters, GitHub's alphabet.
func filler(n int) string {
	const abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = abc[rng.IntN(len(abc))]
	}
	return string(b)
}

func main() {
	tokens := map[string]string{
		// ghp_ and 36 characters; the last six are a checksum on real ones.
		"classic":          "ghp_REAL" + filler(32),
		"oauth":            "gho_REAL" + filler(32),
		"user_to_server":   "ghu_REAL" + filler(32),
		"app_installation": "ghs_REAL" + filler(32),
		// github_pat_, 22 characters, '_', 59 characters.
		"fine_grained": "github_pat_11REAL" + filler(16) + "_" + filler(59),
	}
	b, err := json.MarshalIndent(tokens, "", "  ")
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile("testdata/github/tokens.json", append(b, '\n'), 0o644); err != nil {
		log.Fatal(err)
	}
}
