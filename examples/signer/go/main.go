// Signs a token through `keyturn signer` and verifies it against the key set's JWKS, with Go's
// standard library only (crypto/ecdsa for ES256; other algorithms are left to a JOSE library).
//
//	KEYTURN_SIGNER_URL=http://127.0.0.1:8081 KEYTURN_SIGNER_SECRET=kts_... \
//	KEYTURN_JWKS_URL=http://127.0.0.1:8080/keysets/default/jwks.json go run . default
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"strings"
	"time"
)

type signed struct {
	Token string `json:"token"`
	Kid   string `json:"kid"`
	Iat   int64  `json:"iat"`
	Exp   int64  `json:"exp"`
}

type problem struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

// sign asks the signer for a token of keySet with these claims, living ttl.
func sign(keySet string, claims map[string]any, ttl string) (signed, error) {
	body, _ := json.Marshal(map[string]any{"claims": claims, "ttl": ttl})
	req, _ := http.NewRequest(http.MethodPost, os.Getenv("KEYTURN_SIGNER_URL")+"/v1/keysets/"+keySet+"/sign", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+os.Getenv("KEYTURN_SIGNER_SECRET"))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return signed{}, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		var p problem
		_ = json.NewDecoder(res.Body).Decode(&p)
		return signed{}, fmt.Errorf("%d %s: %s", p.Status, p.Code, p.Detail)
	}
	var s signed
	return s, json.NewDecoder(res.Body).Decode(&s)
}

// verifyES256 checks the token's signature with the JWKS key of its kid, and its expiry.
func verifyES256(token, jwksURL string) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("not a compact JWS")
	}
	var header struct{ Alg, Kid string }
	if err := decodeSegment(parts[0], &header); err != nil || header.Alg != "ES256" {
		return nil, fmt.Errorf("want an ES256 header, got %q", header.Alg)
	}
	res, err := http.Get(jwksURL)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var jwks struct {
		Keys []struct{ Kid, Crv, X, Y string } `json:"keys"`
	}
	if err := json.NewDecoder(res.Body).Decode(&jwks); err != nil {
		return nil, err
	}
	for _, k := range jwks.Keys {
		if k.Kid != header.Kid || k.Crv != "P-256" {
			continue
		}
		key := &ecdsa.PublicKey{Curve: elliptic.P256(), X: b64Int(k.X), Y: b64Int(k.Y)}
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
		// JWS ECDSA signatures are r‖s, 32 bytes each.
		if len(sig) != 64 || !ecdsa.Verify(key, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			return nil, fmt.Errorf("bad signature")
		}
		var claims map[string]any
		if err := decodeSegment(parts[1], &claims); err != nil {
			return nil, err
		}
		if exp, _ := claims["exp"].(float64); int64(exp) <= time.Now().Unix() {
			return nil, fmt.Errorf("expired")
		}
		return claims, nil
	}
	return nil, fmt.Errorf("kid %s is not in the JWKS", header.Kid)
}

func decodeSegment(segment string, into any) error {
	raw, err := base64.RawURLEncoding.DecodeString(segment)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, into)
}

func b64Int(s string) *big.Int {
	raw, _ := base64.RawURLEncoding.DecodeString(s)
	return new(big.Int).SetBytes(raw)
}

func main() {
	keySet := "default"
	if len(os.Args) > 1 {
		keySet = os.Args[1]
	}
	s, err := sign(keySet, map[string]any{"sub": "user-42", "scope": "read"}, "5m")
	if err != nil {
		fmt.Fprintln(os.Stderr, "sign:", err)
		os.Exit(1)
	}
	claims, err := verifyES256(s.Token, os.Getenv("KEYTURN_JWKS_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "verify:", err)
		os.Exit(1)
	}
	fmt.Printf("signed by %s, valid until %s: iss=%v sub=%v\n", s.Kid, time.Unix(s.Exp, 0).UTC().Format(time.RFC3339), claims["iss"], claims["sub"])
	fmt.Println(s.Token)
}
