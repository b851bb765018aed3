package dynamodb

// readOps are the operations of this file.
var readOps = map[string]opFunc{}
