package e2e

import (
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/e2e/framework"
	"github.com/veltrixdb/veltrix/pkg/exportgen"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
)

// TestBinImportRateAndItemSize: `--rate` holds within 5 % over a short
// import (a full token bucket once let 1500/s run at 2,070/s), and a 390 KB
// item of binary attributes, within DynamoDB's 400 KB item limit but over it
// as JSON, imports with `--encoding json` instead of being refused as
// oversize.
func TestBinImportRateAndItemSize(t *testing.T) {
	binTest(t)
	bins := framework.Build(t)
	bins.Require(t, framework.Migrator, framework.CLI)
	veltrix := bins.Path(t, framework.CLI)
	c := framework.Start(t, framework.Options{Nodes: 1, RF: 1, Migrator: true})

	blob := base64.StdEncoding.EncodeToString(make([]byte, 390<<10))
	big := fmt.Sprintf(`{"Item":{%q:{"S":"user#big"},%q:{"S":"s"},"blob":{"B":%q}}}`, exportgen.PartitionKey, exportgen.SortKey, blob)
	const items, rate = 600, 300.0
	exp, err := exportgen.Generate(filepath.Join(t.TempDir(), "export"), exportgen.Options{
		Items: items - 1, Files: 2, Seed: 5, Lean: true,
		Lines: func(file, line, item int, data []byte) [][]byte {
			if file == 1 && line == 1 {
				return [][]byte{data, []byte(big)}
			}
			return [][]byte{data}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	res := runBin(t, 2*time.Minute, "", veltrix, "import", "--source", exp.Dir, "--table", "limits", "--create-table",
		"--pk", exportgen.PartitionKey+":S", "--sk", exportgen.SortKey+":S", "--encoding", "json",
		"--rate", fmt.Sprint(rate), "--parallelism", "2",
		"--endpoints", strings.Join(c.RouterAddrs(), ","), "--migrator", c.MigratorAddr(), "--output", "json")
	job := cliJob(t, "veltrix import", res)
	live := exp.Live + 1 // the big item is an added line
	if res.code != 0 || job.GetState() != migratorv1.JobState_JOB_STATE_SUCCEEDED || job.GetProgress().GetItemsWritten() != uint64(live) {
		t.Fatalf("import: exit %d, %s, %d of %d items written: %s\n%s", res.code, job.GetState(), job.GetProgress().GetItemsWritten(), live, job.GetError(), res.stderr)
	}
	took := job.GetEndTime().AsTime().Sub(job.GetStartTime().AsTime())
	if got := float64(live) / took.Seconds(); got > rate*1.05 {
		t.Errorf("--rate %.0f: %d items in %v = %.0f items/s, more than 5 %% over the limit", rate, live, took, got)
	}
}
