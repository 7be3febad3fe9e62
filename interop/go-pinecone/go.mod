module conifer/interop/gopinecone

go 1.21

require (
	github.com/gorilla/websocket v1.5.0
	github.com/matrix-org/pinecone v0.11.1-0.20230810010612-ea4c33717fd7
)

require (
	github.com/Arceliar/phony v0.0.0-20210209235338-dde1a8dca979 // indirect
	github.com/klauspost/compress v1.15.9 // indirect
	go.uber.org/atomic v1.9.0 // indirect
	golang.org/x/net v0.14.0 // indirect
	golang.org/x/sys v0.11.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
	nhooyr.io/websocket v1.8.7 // indirect
)
