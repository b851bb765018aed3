module github.com/veltrixdb/veltrix/services/migrator

go 1.26
replace github.com/veltrixdb/veltrix/pkg => ../../pkg
replace github.com/veltrixdb/veltrix/proto => ../../proto
