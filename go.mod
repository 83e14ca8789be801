module github.com/conduit-mesh/conduit

go 1.26.0

require (
	github.com/KimMachineGun/automemlimit v1.0.1
	github.com/spf13/cobra v1.10.2
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/pbnjay/memory v0.0.0-20210728143218-7b4eea64cf58 // indirect
	github.com/spf13/pflag v1.0.10 // indirect
)

replace (
	github.com/conduit-mesh/conduit/plugin-sdk => ./plugin-sdk
	github.com/conduit-mesh/conduit/proto => ./proto
)
