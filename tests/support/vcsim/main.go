// A vCenter simulator for Octoprov's tests: govmomi's simulator package (Debian's
// golang-github-vmware-govmomi-dev) serving one datacenter, one cluster with one host, one
// datastore, the standard port group "VM Network" and one distributed port group, over HTTPS
// with the simulator's built-in self-signed certificate, on the address given.
//
// It prints the SDK URL on its first line once it listens, then serves until it is signalled.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/vmware/govmomi/simulator"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	username := flag.String("username", "user", "the only user name accepted")
	password := flag.String("password", "pass", "its password")
	flag.Parse()

	model := simulator.VPX()
	model.Datacenter = 1
	model.Cluster = 1
	model.ClusterHost = 1
	model.Host = 0
	model.Datastore = 1
	model.Portgroup = 1
	model.Machine = 0
	if err := model.Create(); err != nil {
		fmt.Fprintln(os.Stderr, "vcsim:", err)
		os.Exit(1)
	}
	defer model.Remove()

	model.Service.TLS = new(tls.Config)
	model.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(*username, *password)}
	server := model.Service.NewServer()
	defer server.Close()

	shown := *server.URL
	shown.User = nil
	fmt.Println(shown.String())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
