// Command x509check parses a DER certificate with Go's strict X.509 parser,
// as Go Pinecone's QUIC layer does with a peer's certificate, and prints
// "ok <CN> <SAN> <hex key>" or the parser's error.
package main

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
)

func main() {
	der, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Println("read:", err)
		os.Exit(2)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		fmt.Println("parse:", err)
		os.Exit(1)
	}
	key, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok {
		fmt.Println("not an ed25519 key")
		os.Exit(1)
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		fmt.Println("self-signature:", err)
		os.Exit(1)
	}
	fmt.Println("ok", cert.Subject.CommonName, cert.DNSNames[0], hex.EncodeToString(key), cert.SerialNumber, cert.NotBefore.Year())
}
