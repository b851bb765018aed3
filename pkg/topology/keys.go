// Package topology is the cluster's shared state in etcd: the key layout of
// DESIGN.md, typed documents for the cluster config, storage nodes, tables
// and placement, node registration under a kept-alive lease, and a watcher
// that keeps an in-memory snapshot current so request paths never read etcd.
//
// Layout under /veltrix/<cluster>/:
//
//	config            ClusterConfig (written once at bootstrap)
//	cluster_id        random id of this cluster (written once, by the first
//	                  process that needs it; stamped into data directories)
//	nodes/<id>        Node, under the node's lease
//	identities/<id>   NodeIdentity: the incarnation of the data directory
//	                  that is node <id> (no lease: it outlives the process)
//	placement         Placement {epoch, replicas[partition]}
//	controller/       election for the placement controller
//	tables/<name>     Table
//	jobs/<id>         migrator jobs (owned by the migrator)
package topology

import (
	"fmt"
	"regexp"
	"strings"
)

// Keys builds the etcd keys of one cluster.
type Keys struct {
	prefix string
}

var clusterNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidateClusterName reports whether name can be a cluster name: 1 to 63
// characters of [a-z0-9_-], starting with a letter or digit.
func ValidateClusterName(name string) error {
	if !clusterNameRE.MatchString(name) {
		return fmt.Errorf("topology: cluster name %q: want 1 to 63 characters of [a-z0-9_-] starting with a letter or digit", name)
	}
	return nil
}

// NewKeys returns the key layout of cluster.
func NewKeys(cluster string) Keys { return Keys{prefix: "/veltrix/" + cluster + "/"} }

// Prefix is the prefix of every key of the cluster.
func (k Keys) Prefix() string { return k.prefix }

// Config is the cluster config key.
func (k Keys) Config() string { return k.prefix + "config" }

// ClusterID is the key of the cluster's random id.
func (k Keys) ClusterID() string { return k.prefix + "cluster_id" }

// NodesPrefix is the prefix of the node registrations.
func (k Keys) NodesPrefix() string { return k.prefix + "nodes/" }

// Node is the registration key of node id.
func (k Keys) Node(id string) string { return k.NodesPrefix() + id }

// NodeIdentity is the key of node id's identity claim.
func (k Keys) NodeIdentity(id string) string { return k.prefix + "identities/" + id }

// Placement is the placement document key.
func (k Keys) Placement() string { return k.prefix + "placement" }

// Controller is the election prefix of the placement controller.
func (k Keys) Controller() string { return k.prefix + "controller" }

// TablesPrefix is the prefix of the table documents.
func (k Keys) TablesPrefix() string { return k.prefix + "tables/" }

// Table is the key of table name.
func (k Keys) Table(name string) string { return k.TablesPrefix() + name }

// JobsPrefix is the prefix of the migrator's jobs.
func (k Keys) JobsPrefix() string { return k.prefix + "jobs/" }

// Job is the key of job id; its checkpoints live below Job(id)+"/".
func (k Keys) Job(id string) string { return k.JobsPrefix() + id }

// child returns the part of key after prefix and whether key is directly
// below prefix.
func child(key, prefix string) (string, bool) {
	if !strings.HasPrefix(key, prefix) {
		return "", false
	}
	rest := key[len(prefix):]
	if rest == "" || strings.Contains(rest, "/") {
		return "", false
	}
	return rest, true
}
