package placement_test

import (
	"fmt"

	"github.com/veltrixdb/veltrix/pkg/placement"
)

func Example() {
	nodes := []placement.Node{
		{ID: "n1", Zone: "us-east-1a"},
		{ID: "n2", Zone: "us-east-1b"},
		{ID: "n3", Zone: "us-east-1c"},
	}
	const partitions = 1024
	table, err := placement.Compute(nodes, partitions, 3)
	if err != nil {
		fmt.Println(err)
		return
	}

	// Route a key: table id and partition key to partition, partition to replicas.
	p := placement.PartitionOf(7, []byte("user#42"), partitions)
	fmt.Println(len(table.ReplicasOf(p)), "replicas")

	// A fourth node takes over about a quarter of the replicas.
	bigger, err := placement.Compute(append(nodes, placement.Node{ID: "n4", Zone: "us-east-1a"}), partitions, 3)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(placement.Diff(table, bigger) == bigger.PartitionsPerNode()["n4"])

	// The controller stores the placement in etcd as a document.
	data, err := placement.NewDocument(2, bigger).Marshal()
	if err != nil {
		fmt.Println(err)
		return
	}
	doc, err := placement.Unmarshal(data)
	fmt.Println(doc.Epoch, doc.HashFunction, err)
	// Output:
	// 3 replicas
	// true
	// 2 xxhash64-v1 <nil>
}
