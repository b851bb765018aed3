module github.com/veltrixdb/veltrix/cmd/veltrix

go 1.26
replace github.com/veltrixdb/veltrix/pkg => ../../pkg
replace github.com/veltrixdb/veltrix/proto => ../../proto
replace github.com/veltrixdb/veltrix/services/storage => ../../services/storage
replace github.com/veltrixdb/veltrix/services/router => ../../services/router
replace github.com/veltrixdb/veltrix/services/migrator => ../../services/migrator
