module conifer/interop/x509check

go 1.21
