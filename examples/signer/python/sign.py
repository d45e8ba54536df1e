"""Signs a token through `keyturn signer`, with Python's standard library only.

    KEYTURN_SIGNER_URL=http://127.0.0.1:8081 KEYTURN_SIGNER_SECRET=kts_... python3 sign.py default

The standard library has no ECDSA or Ed25519, so an ES256 or EdDSA token is not verified here: the
services that receive it verify it against the JWKS (with a JOSE library such as PyJWT, or as the Go
example does with crypto/ecdsa). An RS256 token is verified with plain integer arithmetic when
KEYTURN_JWKS_URL names the key set's JWKS.
"""

import base64
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request


def sign(key_set, claims, ttl="5m"):
    """The signer's answer: {"token", "kid", "iat", "exp"}; a refusal raises with its problem document."""
    request = urllib.request.Request(
        f"{os.environ['KEYTURN_SIGNER_URL']}/v1/keysets/{key_set}/sign",
        data=json.dumps({"claims": claims, "ttl": ttl}).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {os.environ['KEYTURN_SIGNER_SECRET']}",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        problem = json.load(error)  # application/problem+json
        raise RuntimeError(f"{problem['status']} {problem['code']}: {problem['detail']}") from None


def b64decode(segment):
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def verify_rs256(token, jwks_url):
    """RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 §8.2.2) against the JWKS key of the token's kid."""
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = json.loads(b64decode(header_b64))
    with urllib.request.urlopen(jwks_url, timeout=10) as response:
        key = next(k for k in json.load(response)["keys"] if k["kid"] == header["kid"])
    n = int.from_bytes(b64decode(key["n"]), "big")
    e = int.from_bytes(b64decode(key["e"]), "big")
    size = (n.bit_length() + 7) // 8
    signature = int.from_bytes(b64decode(signature_b64), "big")
    encoded = pow(signature, e, n).to_bytes(size, "big")
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420")
    digest = hashlib.sha256(f"{header_b64}.{payload_b64}".encode()).digest()
    expected = b"\x00\x01" + b"\xff" * (size - 3 - len(digest_info) - len(digest)) + b"\x00" + digest_info + digest
    claims = json.loads(b64decode(payload_b64))
    if encoded != expected or claims["exp"] <= time.time():
        raise RuntimeError("the token does not verify")
    return claims


def main():
    key_set = sys.argv[1] if len(sys.argv) > 1 else "default"
    try:
        signed = sign(key_set, {"sub": "user-42", "scope": "read"})
    except RuntimeError as error:
        sys.exit(f"sign: {error}")
    alg = json.loads(b64decode(signed["token"].split(".")[0]))["alg"]
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(signed["exp"]))
    print(f"signed by {signed['kid']} ({alg}), valid until {expires}")
    if alg == "RS256" and os.environ.get("KEYTURN_JWKS_URL"):
        claims = verify_rs256(signed["token"], os.environ["KEYTURN_JWKS_URL"])
        print(f"verified against the JWKS: iss={claims['iss']} sub={claims['sub']}")
    print(signed["token"])


if __name__ == "__main__":
    main()
