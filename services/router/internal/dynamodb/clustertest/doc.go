// Package clustertest tests the DynamoDB endpoint's read operations end to
// end: the AWS SDK for Go v2 against the endpoint over a real in-process
// cluster (localcluster: embedded etcd, storage nodes on Pebble, a
// router). It is a package of its own because the endpoint's unit tests
// (package dynamodb, over bufconn storage) have a TestMain of their own
// with a goroutine-leak check, and a cluster is started per package here.
package clustertest
