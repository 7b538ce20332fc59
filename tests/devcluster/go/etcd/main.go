// Command etcd runs the etcd server (same entry point as go.etcd.io/etcd/v3's main).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
