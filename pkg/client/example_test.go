package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log"
	"os"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/veltrixdb/veltrix/pkg/client"
	kvv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/kv/v1"
)

// startExampleRouters starts two in-process stand-ins for Veltrix routers on
// loopback ports, so the examples run without a cluster.
func startExampleRouters() (endpoints []string, stop func()) {
	st := newStore()
	var fs []*fakeRouter
	for range 2 {
		f, err := startFake(st)
		if err != nil {
			log.Fatal(err)
		}
		fs = append(fs, f)
		endpoints = append(endpoints, f.addr)
	}
	return endpoints, func() {
		for _, f := range fs {
			f.srv.Stop()
		}
	}
}

func ExampleClient() {
	// The routers' addresses. Against a real cluster these are your
	// routers, for instance []string{"127.0.0.1:7400"} for the dev stack;
	// here two in-process fakes on loopback ports stand in for them.
	endpoints, stop := startExampleRouters()
	defer stop()

	ctx := context.Background()
	c, err := client.New(ctx, endpoints)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	if _, err := c.CreateTable(ctx, "carts"); err != nil {
		fmt.Println(err)
		return
	}
	user := []byte("user-1")
	for _, item := range []string{"apple", "bread", "cheese"} {
		if _, err := c.Put(ctx, "carts", user, []byte("item#"+item), []byte("1"), client.WithTTL(24*time.Hour)); err != nil {
			fmt.Println(err)
			return
		}
	}

	item, found, err := c.Get(ctx, "carts", user, []byte("item#bread"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("bread:", found, string(item.Value), !item.ExpireTime.IsZero())

	_, found, err = c.Get(ctx, "carts", user, []byte("item#eggs"))
	fmt.Println("eggs:", found, err)

	// Query pages through the partition key's items in sort-key order.
	for item, err := range c.Query(ctx, "carts", user, client.QueryOptions{Prefix: []byte("item#"), Reverse: true}) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(string(item.SortKey))
	}

	// An unknown table is NotFound; a missing item is not an error.
	_, _, err = c.Get(ctx, "cartz", user, nil)
	fmt.Println(client.IsNotFound(err), status.Code(err) == codes.NotFound)
	// Output:
	// bread: true 1 true
	// eggs: false <nil>
	// item#cheese
	// item#bread
	// item#apple
	// true true
}

func ExampleClient_BatchWriteResults() {
	endpoints, stop := startExampleRouters()
	defer stop()
	ctx := context.Background()
	c, err := client.New(ctx, endpoints)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	if _, err := c.CreateTable(ctx, "sessions"); err != nil {
		fmt.Println(err)
		return
	}

	// Any number of mutations: the client sends them 1000 per call, in order.
	muts := make([]client.Mutation, 2500)
	for i := range muts {
		muts[i] = client.Mutation{
			Key:        client.Key{Table: "sessions", PartitionKey: fmt.Appendf(nil, "s%04d", i)},
			Value:      []byte("{}"),
			ExpireTime: time.Now().Add(time.Hour),
		}
	}
	results, err := c.BatchWriteResults(ctx, muts)
	if err != nil {
		fmt.Println(err)
		return
	}
	applied := 0
	for _, r := range results {
		if r.Applied {
			applied++
		}
	}
	fmt.Println(applied, "writes applied")

	n := 0
	for _, err := range c.Scan(ctx, "sessions", 0, 1) {
		if err != nil {
			fmt.Println(err)
			return
		}
		n++
	}
	fmt.Println(n, "items scanned")
	// Output:
	// 2500 writes applied
	// 2500 items scanned
}

// A write under an older version than the stored one changes nothing: the
// result says it was superseded, and by which version.
func ExampleClient_Put_superseded() {
	endpoints, stop := startExampleRouters()
	defer stop()
	ctx := context.Background()
	c, err := client.New(ctx, endpoints)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	if _, err := c.CreateTable(ctx, "profiles"); err != nil {
		fmt.Println(err)
		return
	}
	for _, v := range []uint64{200, 100} {
		r, err := c.Put(ctx, "profiles", []byte("user-1"), nil, []byte("v"), client.WithVersion(v))
		switch {
		case err != nil:
			fmt.Println(err)
			return
		case r.Applied:
			fmt.Printf("version %d applied\n", r.Version)
		default:
			fmt.Printf("version %d superseded by %d; nothing changed\n", r.Version, r.CurrentVersion)
		}
	}
	// Output:
	// version 200 applied
	// version 100 superseded by 200; nothing changed
}

// New with every option; not run, as it needs routers on these ports.
func ExampleNew() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.New(ctx, []string{"127.0.0.1:7400", "127.0.0.1:7401"},
		client.WithMaxRetries(8),
		client.WithBackoff(50*time.Millisecond, 2*time.Second),
		client.WithDefaultTimeout(3*time.Second),
		client.WithReadConsistency(kvv1.Consistency_CONSISTENCY_QUORUM),
		client.WithWriteConsistency(kvv1.Consistency_CONSISTENCY_ALL),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// A version of your own makes a retried write strictly idempotent.
	// Versions are hybrid logical clock values: Unix microseconds shifted
	// left 12 bits, plus a logical counter in the low bits.
	version := uint64(time.Now().UnixMicro()) << 12
	if _, err := c.Put(ctx, "profiles", []byte("user-1"), nil, []byte(`{"name":"Ada"}`), client.WithVersion(version)); err != nil {
		log.Fatal(err)
	}
}

// ExampleWithTLS connects over TLS, verifying the routers with a CA file
// and presenting a client certificate (the dev stack writes these to
// .veltrix/pki), and authenticates with an API key. It is not run: it needs
// a secured cluster.
func ExampleWithTLS() {
	caPEM, err := os.ReadFile(".veltrix/pki/ca.pem")
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(".veltrix/pki/admin.pem", ".veltrix/pki/admin-key.pem")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.New(ctx, []string{"127.0.0.1:7400"},
		client.WithTLS(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}),
		client.WithBearerToken(os.Getenv("VELTRIX_TOKEN")), // an API key, "<id>.<secret>"
	)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
}
