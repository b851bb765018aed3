package dynamodb

// tableOps are the operations of this file.
var tableOps = map[string]opFunc{}
