module github.com/veltrixdb/veltrix/e2e/peers

go 1.26.0
