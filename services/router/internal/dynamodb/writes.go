package dynamodb

// writeOps are the operations of this file.
var writeOps = map[string]opFunc{}
