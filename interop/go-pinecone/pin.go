// Package pin exists only so that this module records the exact Go Pinecone
// version Conifer's interoperability tests run against (the one Dendrite
// v0.13.8 pins). Build the reference relay with:
//
//	go build -o pinecone github.com/matrix-org/pinecone/cmd/pinecone
package pin

import (
	_ "github.com/gorilla/websocket"
	_ "github.com/matrix-org/pinecone/connections"
	_ "github.com/matrix-org/pinecone/multicast"
	_ "github.com/matrix-org/pinecone/router"
)
