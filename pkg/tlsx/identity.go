// Package tlsx loads the TLS certificates of every Veltrix listener and
// connection from PEM files, reloads them when the files change (cert-manager
// rotates them in place), and names who is on the other end of a mutual-TLS
// connection: a Veltrix service (router, storage, migrator) or a principal.
//
// A certificate says who it is in a URI SAN:
//
//	veltrix://service/router     a router (likewise storage, migrator)
//	veltrix://principal/<name>   a client principal
//
// A client certificate without a veltrix URI is the principal named by its
// Subject Common Name.
package tlsx

import (
	"context"
	"crypto/x509"
	"net/url"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Role is a Veltrix service's role, from its certificate.
type Role string

// The service roles.
const (
	RoleRouter   Role = "router"
	RoleStorage  Role = "storage"
	RoleMigrator Role = "migrator"
)

// URIScheme is the scheme of the URI SANs that name identities.
const URIScheme = "veltrix"

// ServiceURI is the URI SAN of a service certificate of role r.
func ServiceURI(r Role) *url.URL {
	return &url.URL{Scheme: URIScheme, Host: "service", Path: "/" + string(r)}
}

// PrincipalURI is the URI SAN of a client certificate of principal name.
func PrincipalURI(name string) *url.URL {
	return &url.URL{Scheme: URIScheme, Host: "principal", Path: "/" + name}
}

// Identity is who a verified certificate belongs to: a service (Role set)
// or a principal (Principal set). The zero Identity is nobody.
type Identity struct {
	Role      Role
	Principal string
}

// IsZero reports whether the identity names nobody.
func (id Identity) IsZero() bool { return id.Role == "" && id.Principal == "" }

// String is "service:<role>", "principal:<name>" or "".
func (id Identity) String() string {
	switch {
	case id.Role != "":
		return "service:" + string(id.Role)
	case id.Principal != "":
		return "principal:" + id.Principal
	}
	return ""
}

// CertIdentity reads the identity of a verified leaf certificate: its
// first veltrix:// URI SAN, else its Common Name as a principal. A
// veltrix URI naming an unknown service role or an empty principal is
// nobody (the zero Identity), never a fallback to the Common Name.
func CertIdentity(cert *x509.Certificate) Identity {
	if cert == nil {
		return Identity{}
	}
	for _, u := range cert.URIs {
		if u.Scheme != URIScheme {
			continue
		}
		name := strings.TrimPrefix(u.Path, "/")
		switch u.Host {
		case "service":
			switch r := Role(name); r {
			case RoleRouter, RoleStorage, RoleMigrator:
				return Identity{Role: r}
			}
			return Identity{}
		case "principal":
			if name == "" || strings.Contains(name, "/") {
				return Identity{}
			}
			return Identity{Principal: name}
		}
		return Identity{}
	}
	if cn := cert.Subject.CommonName; cn != "" {
		return Identity{Principal: cn}
	}
	return Identity{}
}

// PeerIdentity is the identity of a gRPC call's verified client
// certificate; false when the call came without TLS or without a client
// certificate.
func PeerIdentity(ctx context.Context) (Identity, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Identity{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return Identity{}, false
	}
	id := CertIdentity(info.State.VerifiedChains[0][0])
	return id, !id.IsZero()
}
