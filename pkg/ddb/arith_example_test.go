package ddb_test

import (
	"fmt"

	"github.com/veltrixdb/veltrix/pkg/ddb"
)

// Arithmetic is exact, and a result DynamoDB cannot store is an error, not
// a rounded number.
func ExampleN_Add() {
	sum, _ := ddb.MustN("0.1").Add(ddb.MustN("0.2"))
	fmt.Println(sum)
	_, err := ddb.MustN("1E50").Add(ddb.MustN("1")) // needs 51 significant digits
	fmt.Println(err)
	// Output:
	// 0.3
	// ddb: invalid number: Number overflow. Attempting to store a number with magnitude larger than supported range
}
