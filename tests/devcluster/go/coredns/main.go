// Command coredns is CoreDNS with only the plugins the real node's cluster DNS uses
// (the Corefile in tests/devcluster/node.py): cluster.local from the API server, the rest
// forwarded to the host's resolvers. Same entry point as upstream's coredns.go.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"

	"github.com/coredns/coredns/coremain"
)

// The order plugins run in a server block (upstream's core/dnsserver/zdirectives.go order,
// restricted to the plugins imported above).
var directives = []string{
	"bind",
	"ready",
	"health",
	"errors",
	"log",
	"loop",
	"reload",
	"cache",
	"kubernetes",
	"forward",
}

func init() {
	dnsserver.Directives = directives
}

func main() {
	coremain.Run()
}
