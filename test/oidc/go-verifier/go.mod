module keyturn.test/oidc/go-verifier

go 1.23.0

require github.com/coreos/go-oidc/v3 v3.13.0

require (
	github.com/go-jose/go-jose/v4 v4.0.5 // indirect
	golang.org/x/crypto v0.36.0 // indirect
	golang.org/x/oauth2 v0.28.0 // indirect
)
