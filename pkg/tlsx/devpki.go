package tlsx

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Lifetimes of the dev PKI's certificates. A certificate with less than
// devRenewBefore left is issued again.
const (
	devCALifetime   = 10 * 365 * 24 * time.Hour
	devLeafLifetime = 365 * 24 * time.Hour
	devRenewBefore  = 30 * 24 * time.Hour
)

// DevAdmin is the principal of the dev PKI's client certificate.
const DevAdmin = "admin"

// DevPKI are the files WriteDevPKI wrote.
type DevPKI struct {
	// Dir is the directory holding them.
	Dir string
	// CA and CAKey are the CA's certificate and key (ca.pem, ca-key.pem).
	CA, CAKey string
	// Router, Storage and Migrator are the service certificates.
	Router, Storage, Migrator Files
	// Admin is the client certificate of principal DevAdmin.
	Admin Files
}

// Service returns the files of role r's certificate.
func (p DevPKI) Service(r Role) Files {
	switch r {
	case RoleRouter:
		return p.Router
	case RoleStorage:
		return p.Storage
	case RoleMigrator:
		return p.Migrator
	}
	return Files{}
}

// WriteDevPKI writes a local CA (ECDSA P-256) and the certificates of a
// dev cluster to dir: router, storage and migrator service certificates
// (URI SAN ServiceURI, DNS and IP SANs from hosts plus localhost, 127.0.0.1
// and ::1, server and client auth) and a client certificate of principal
// "admin" (PrincipalURI). Files: ca.pem, ca-key.pem, <name>.pem,
// <name>-key.pem, keys mode 0600. It is idempotent: an existing CA valid for
// 30 more days is kept, and so are leaves it signed that are valid as long
// and name the hosts; anything else is written again.
func WriteDevPKI(dir string, hosts []string) (DevPKI, error) {
	p := DevPKI{Dir: dir, CA: filepath.Join(dir, "ca.pem"), CAKey: filepath.Join(dir, "ca-key.pem")}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return p, fmt.Errorf("tlsx: dev PKI: %w", err)
	}
	hosts = append([]string{"localhost", "127.0.0.1", "::1"}, hosts...)
	now := time.Now()
	ca, err := LoadCA(p.CA, p.CAKey)
	if err != nil || now.Add(devRenewBefore).After(ca.Cert.NotAfter) {
		if ca, err = NewCA(pkix.Name{CommonName: "Veltrix dev CA", Organization: []string{"Veltrix dev"}}, devCALifetime); err != nil {
			return p, err
		}
		if err := ca.Write(p.CA, p.CAKey); err != nil {
			return p, err
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	leaves := []struct {
		dst  *Files
		leaf Leaf
	}{
		{&p.Router, Leaf{Name: string(RoleRouter), Role: RoleRouter, Hosts: hosts}},
		{&p.Storage, Leaf{Name: string(RoleStorage), Role: RoleStorage, Hosts: hosts}},
		{&p.Migrator, Leaf{Name: string(RoleMigrator), Role: RoleMigrator, Hosts: hosts}},
		{&p.Admin, Leaf{Name: DevAdmin, Principal: DevAdmin}},
	}
	for _, l := range leaves {
		l.leaf.Server, l.leaf.Client, l.leaf.NotAfter = true, true, now.Add(devLeafLifetime)
		*l.dst = Files{CertFile: filepath.Join(dir, l.leaf.Name+".pem"), KeyFile: filepath.Join(dir, l.leaf.Name+"-key.pem"), CAFile: p.CA}
		if leafValid(*l.dst, pool, l.leaf.Hosts, now) {
			continue
		}
		if _, err := ca.Issue(l.dst.CertFile, l.dst.KeyFile, l.leaf); err != nil {
			return p, err
		}
	}
	return p, nil
}

// leafValid reports whether f holds a certificate signed by pool's CA,
// valid for devRenewBefore more, naming the hosts, with its key.
func leafValid(f Files, pool *x509.CertPool, hosts []string, now time.Time) bool {
	leaf, _, err := loadPair(f.CertFile, f.KeyFile)
	if err != nil || now.Add(devRenewBefore).After(leaf.NotAfter) {
		return false
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return false
	}
	dns, ips := splitHosts(hosts)
	for _, d := range dns {
		if !slices.Contains(leaf.DNSNames, d) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}
