// Command go-verifier verifies a JWT the way a Go OIDC client does: github.com/coreos/go-oidc discovers
// the provider from its issuer URL alone (<issuer>/.well-known/openid-configuration, whose issuer must
// match), then checks the token's signature against the discovered JWKS, its iss and its expiry.
//
// Usage: go-verifier <issuer-url> <token>. Prints the token's claims as JSON and exits 0 when the token
// verifies; prints why not on stderr and exits 1 when it does not (2 for a discovery failure).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: go-verifier <issuer-url> <token>")
		os.Exit(64)
	}
	issuer, token := os.Args[1], os.Args[2]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	provider, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		fmt.Fprintf(os.Stderr, "discovery failed: %v\n", err)
		os.Exit(2)
	}
	// No audience here: keyturn's tokens name whatever audience their issuer chooses.
	verifier := provider.Verifier(&oidc.Config{SkipClientIDCheck: true})
	idToken, err := verifier.Verify(ctx, token)
	if err != nil {
		fmt.Fprintf(os.Stderr, "token refused: %v\n", err)
		os.Exit(1)
	}
	var claims map[string]any
	if err := idToken.Claims(&claims); err != nil {
		fmt.Fprintf(os.Stderr, "claims unreadable: %v\n", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(claims); err != nil {
		fmt.Fprintf(os.Stderr, "cannot print the claims: %v\n", err)
		os.Exit(1)
	}
}
