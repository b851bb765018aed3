package server

import (
	"strings"
	"testing"

	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
)

func TestCheckAWSCredentialsFile(t *testing.T) {
	var problems []string
	checkExport(&migratorv1.ExportSource{Uri: "s3://b/p", Aws: &migratorv1.AwsOptions{Profile: "prod", CredentialsFile: "creds"}}, "spec.export", &problems)
	if len(problems) != 1 || !strings.Contains(problems[0], "spec.export.aws.credentials_file") || !strings.Contains(problems[0], "absolute") {
		t.Fatalf("relative credentials file: %v", problems)
	}
	problems = nil
	checkExport(&migratorv1.ExportSource{Uri: "s3://b/p", Aws: &migratorv1.AwsOptions{Profile: "prod", CredentialsFile: "/etc/veltrix/aws"}}, "spec.export", &problems)
	checkTableScan(&migratorv1.TableScanSource{TableName: "t", Aws: &migratorv1.AwsOptions{CredentialsFile: "x"}}, "spec.table_scan", &problems)
	if len(problems) != 1 || !strings.Contains(problems[0], "spec.table_scan.aws.credentials_file") {
		t.Fatalf("problems: %v", problems)
	}
}
