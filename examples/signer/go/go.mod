module keyturn.example/signer-client

go 1.21
