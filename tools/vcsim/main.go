// vcsim launcher for truenas-vmware-coord's tests, built on Debian's govmomi 0.24.2
// simulator library (Debian ships the library but not upstream's vcsim program).
//
// Once listening it prints one line:
//
//	vcsim ready url=https://127.0.0.1:PORT/sdk pid=PID sha256=AA:BB:...
//
// and serves until SIGTERM or SIGINT, then removes its model (temp directories included).
// Extra endpoints: GET /_stats returns per-method SOAP call counts as JSON; ?reset=1
// returns them and starts counting from zero.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

type callCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *callCounter) add(method string) {
	c.mu.Lock()
	c.counts[method]++
	c.mu.Unlock()
}

func (c *callCounter) serve(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	body, _ := json.Marshal(c.counts)
	if r.URL.Query().Get("reset") != "" {
		c.counts = map[string]int{}
	}
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "vcsim: "+format+"\n", args...)
	os.Exit(2)
}

// parseMethodDelay reads "CreateSnapshot_Task:200,RemoveSnapshot_Task:200".
func parseMethodDelay(s string) map[string]int {
	out := map[string]int{}
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		parts := strings.SplitN(item, ":", 2)
		ms, err := strconv.Atoi(strings.TrimSpace(parts[len(parts)-1]))
		if len(parts) != 2 || err != nil || ms < 0 {
			fail("-method-delay: %q is not METHOD:MILLISECONDS", item)
		}
		out[strings.TrimSpace(parts[0])] = ms
	}
	return out
}

// newCertificate makes a fresh self-signed ECDSA certificate for loopback, so every
// instance has its own identity (0.24.2's built-in test key is 1024-bit and shared).
func newCertificate() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "vcsim.localhost", Organization: []string{"vcsim test rig"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	hex := make([]string, len(sum))
	for i, b := range sum {
		hex[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(hex, ":")
}

// nfsSpec is one -nfs flag: NAME=LOCALDIR[,host=REMOTEHOST][,path=REMOTEPATH].
type nfsSpec struct {
	name, localDir, remoteHost, remotePath string
}

func parseNFS(s string) nfsSpec {
	nameDir := strings.SplitN(s, ",", 2)
	kv := strings.SplitN(nameDir[0], "=", 2)
	if len(kv) != 2 || kv[0] == "" || kv[1] == "" {
		fail("-nfs: %q is not NAME=LOCALDIR[,host=H][,path=P]", s)
	}
	spec := nfsSpec{name: kv[0], localDir: kv[1], remoteHost: "127.0.0.1", remotePath: kv[1]}
	if len(nameDir) == 2 {
		for _, opt := range strings.Split(nameDir[1], ",") {
			o := strings.SplitN(opt, "=", 2)
			if len(o) != 2 {
				fail("-nfs: option %q is not KEY=VALUE", opt)
			}
			switch o[0] {
			case "host":
				spec.remoteHost = o[1]
			case "path":
				spec.remotePath = o[1]
			default:
				fail("-nfs: unknown option %q (host, path)", o[0])
			}
		}
	}
	return spec
}

// addNFSDatastore mounts an NFS datastore backed by a local directory on every host,
// through the simulator's own CreateNasDatastore, and fills the hosts' mountInfo
// (empty in 0.24.2) the way ESXi reports an NFS mount.
func addNFSDatastore(spec nfsSpec, linkDir string) error {
	// 0.24.2 names a NAS datastore after the base name of spec.localPath: a symlink
	// with the wanted name pointing at the directory gives it the right name.
	link := filepath.Join(linkDir, spec.name)
	if err := os.Symlink(spec.localDir, link); err != nil {
		return err
	}
	nasSpec := types.HostNasVolumeSpec{
		RemoteHost: spec.remoteHost,
		RemotePath: spec.remotePath,
		LocalPath:  link,
		AccessMode: string(types.HostMountModeReadWrite),
		Type:       string(types.HostFileSystemVolumeFileSystemTypeNFS),
	}
	ctx := &simulator.Context{Map: simulator.Map}
	for _, e := range simulator.Map.All("HostSystem") {
		host := e.(*simulator.HostSystem)
		dss := simulator.Map.Get(*host.ConfigManager.DatastoreSystem).(*simulator.HostDatastoreSystem)
		res := dss.CreateNasDatastore(ctx, &types.CreateNasDatastore{This: dss.Self, Spec: nasSpec})
		if f := res.Fault(); f != nil {
			return fmt.Errorf("CreateNasDatastore %s on %s: %s", spec.name, host.Name, f.String)
		}
		mount := types.HostFileSystemMountInfo{
			MountInfo: types.HostMountInfo{
				Path:       link,
				AccessMode: string(types.HostMountModeReadWrite),
				Mounted:    types.NewBool(true),
				Accessible: types.NewBool(true),
			},
			Volume: &types.HostNasVolume{
				HostFileSystemVolume: types.HostFileSystemVolume{
					Type:     string(types.HostFileSystemVolumeFileSystemTypeNFS),
					Name:     spec.name,
					Capacity: 0,
				},
				RemoteHost:      spec.remoteHost,
				RemotePath:      spec.remotePath,
				RemoteHostNames: []string{spec.remoteHost},
			},
		}
		storage := simulator.Map.Get(*host.ConfigManager.StorageSystem).(*simulator.HostStorageSystem)
		storage.FileSystemVolumeInfo.MountInfo = append(storage.FileSystemVolumeInfo.MountInfo, mount)
		if host.Config != nil {
			if host.Config.FileSystemVolume == nil {
				host.Config.FileSystemVolume = &types.HostFileSystemVolumeInfo{}
			}
			host.Config.FileSystemVolume.MountInfo = append(host.Config.FileSystemVolume.MountInfo, mount)
		}
	}
	return nil
}

func setToolsRunning() {
	for _, e := range simulator.Map.All("VirtualMachine") {
		vm := e.(*simulator.VirtualMachine)
		if vm.Guest == nil {
			vm.Guest = &types.GuestInfo{}
		}
		vm.Guest.ToolsRunningStatus = string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)
		vm.Guest.ToolsStatus = types.VirtualMachineToolsStatusToolsOk
	}
}

func main() {
	// Register for signals before anything creates temp directories.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)

	listen := flag.String("l", "127.0.0.1:0", "listen address")
	esx := flag.Bool("esx", false, "simulate a standalone ESXi host instead of vCenter")
	vms := flag.Int("vm", -1, "VMs per resource pool")
	ds := flag.Int("ds", -1, "local datastores (LocalDS_0..N-1, mounted on every host)")
	hosts := flag.Int("host", -1, "standalone hosts (vCenter only)")
	clusters := flag.Int("cluster", -1, "clusters (vCenter only)")
	clusterHosts := flag.Int("cluster-host", -1, "hosts per cluster (vCenter only)")
	username := flag.String("username", "", "login user name (any non-empty when unset)")
	password := flag.String("password", "", "login password (any non-empty when unset)")
	delay := flag.Int("delay", 0, "milliseconds added to every SOAP call")
	methodDelay := flag.String("method-delay", "", "METHOD:MS,... extra delay per SOAP method")
	trace := flag.Bool("trace", false, "trace SOAP to stderr")
	verbose := flag.Bool("log", false, "keep the simulator's own log on stderr")
	strict := flag.Bool("strict", false, "enforce VMware's snapshot rules (see coord_hooks.go)")
	tools := flag.Bool("tools-running", false, "start every VM with VMware Tools running")
	noEx := flag.Bool("no-snapshot-ex", false, "answer CreateSnapshotEx_Task with MethodNotFound")
	certFile := flag.String("tls-cert", "", "PEM certificate to serve (default: a fresh one)")
	keyFile := flag.String("tls-key", "", "PEM key for -tls-cert")
	var nfs multiFlag
	flag.Var(&nfs, "nfs", "NAME=LOCALDIR[,host=H][,path=P]: an NFS datastore on every host (repeatable)")
	iscsi := flag.String("iscsi", "", "DIR: the NAS's iSCSI target every host is logged in to (see coord_vmfs.go)")
	flag.Parse()
	if !*verbose {
		// The library logs every property collector update; tests and the demo read stdout.
		log.SetOutput(io.Discard)
	}

	// Parse every flag value before anything is created: fail() exits without cleanup.
	delays := parseMethodDelay(*methodDelay)
	var nfsSpecs []nfsSpec
	for _, n := range nfs {
		nfsSpecs = append(nfsSpecs, parseNFS(n))
	}
	if *iscsi != "" {
		if fi, err := os.Stat(*iscsi); err != nil || !fi.IsDir() {
			fail("-iscsi: %s is no directory", *iscsi)
		}
	}

	model := simulator.VPX()
	if *esx {
		model = simulator.ESX()
	}
	for _, f := range []struct {
		value  int
		target *int
	}{{*vms, &model.Machine}, {*ds, &model.Datastore}, {*hosts, &model.Host},
		{*clusters, &model.Cluster}, {*clusterHosts, &model.ClusterHost}} {
		if f.value >= 0 {
			*f.target = f.value
		}
	}

	var cert tls.Certificate
	var err error
	if *certFile != "" {
		cert, err = tls.LoadX509KeyPair(*certFile, *keyFile)
	} else {
		cert, err = newCertificate()
	}
	if err != nil {
		fail("TLS certificate: %v", err)
	}

	linkDir, err := os.MkdirTemp("", "vcsim-nfs-")
	if err != nil {
		fail("temp dir: %v", err)
	}
	defer os.RemoveAll(linkDir)

	if err = model.Create(); err != nil {
		model.Remove()
		os.RemoveAll(linkDir)
		fail("model: %v", err)
	}
	defer model.Remove()

	for _, spec := range nfsSpecs {
		if err = addNFSDatastore(spec, linkDir); err != nil {
			model.Remove()
			os.RemoveAll(linkDir)
			fail("-nfs %s: %v", spec.name, err)
		}
	}
	if *iscsi != "" {
		if err = simulator.CoordIscsiStart(*iscsi); err != nil {
			model.Remove()
			os.RemoveAll(linkDir)
			fail("-iscsi: %v", err)
		}
	}
	if *tools {
		setToolsRunning()
	}
	simulator.CoordStrict = *strict
	simulator.CoordNoSnapshotEx = *noEx
	simulator.Trace = *trace
	model.DelayConfig.Delay = *delay
	model.DelayConfig.MethodDelay = delays

	counter := &callCounter{counts: map[string]int{}}
	simulator.CoordCallHook = counter.add
	model.Service.HandleFunc("/_stats", counter.serve)

	model.Service.Listen = &url.URL{Host: *listen}
	if *username != "" || *password != "" {
		model.Service.Listen.User = url.UserPassword(*username, *password)
	}
	model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}

	select {
	case s := <-sig:
		fmt.Fprintf(os.Stderr, "vcsim: %v before start\n", s)
		return
	default:
	}

	server := model.Service.NewServer()
	defer server.Close()

	fmt.Printf("vcsim ready url=%s pid=%d sha256=%s\n",
		"https://"+server.URL.Host+server.URL.Path, os.Getpid(), fingerprint(cert.Certificate[0]))
	_ = os.Stdout.Sync()

	<-sig
}
