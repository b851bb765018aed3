package checkpoint_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/veltrixdb/veltrix/pkg/etcdembed"
	"github.com/veltrixdb/veltrix/services/migrator/internal/cdc/checkpoint"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestStores(t *testing.T) {
	e, err := etcdembed.Start(etcdembed.Config{Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cli, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })

	for name, store := range map[string]checkpoint.Store{
		"memory": checkpoint.NewMemory(),
		"etcd":   checkpoint.NewEtcd(cli, "/veltrix/test/jobs/j1/shards/"),
	} {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			if _, ok, err := store.Load(ctx, "shardId-1"); ok || err != nil {
				t.Fatalf("Load of nothing = %v, %v", ok, err)
			}
			since := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
			want := checkpoint.Checkpoint{Position: "21258800000000008186106757", Clock: 42, Records: 7, Since: since, UpdateTime: since}
			if err := store.Save(ctx, "shardId-1", want); err != nil {
				t.Fatal(err)
			}
			if err := store.Save(ctx, "segment-000001-of-000004", checkpoint.Checkpoint{Done: true}); err != nil {
				t.Fatal(err)
			}
			got, ok, err := store.Load(ctx, "shardId-1")
			if err != nil || !ok || got.Position != want.Position || got.Clock != 42 || got.Records != 7 || !got.Since.Equal(since) {
				t.Fatalf("Load = %+v, %v, %v", got, ok, err)
			}
			all, err := store.List(ctx)
			if err != nil || len(all) != 2 || !all["segment-000001-of-000004"].Done {
				t.Fatalf("List = %v, %v", all, err)
			}
			for _, bad := range []string{"", "a/b", "shard 1", string(make([]byte, 300))} {
				if err := store.Save(ctx, bad, checkpoint.Checkpoint{}); err == nil {
					t.Errorf("Save(%q) accepted a bad name", bad)
				}
			}
		})
	}

	t.Run("etcd guard", func(t *testing.T) {
		ctx := t.Context()
		lease, err := cli.Grant(ctx, 60)
		if err != nil {
			t.Fatal(err)
		}
		claim := "/veltrix/test/jobs/j2/claims/stream"
		if _, err := cli.Put(ctx, claim, "migrator-1", clientv3.WithLease(lease.ID)); err != nil {
			t.Fatal(err)
		}
		store := checkpoint.NewEtcd(cli, "/veltrix/test/jobs/j2/shards/",
			checkpoint.WithGuard(clientv3.Compare(clientv3.LeaseValue(claim), "=", lease.ID)))
		if err := store.Save(ctx, "shardId-1", checkpoint.Checkpoint{Position: "1"}); err != nil {
			t.Fatal(err)
		}
		// The lease ends: another migrator may own the job now.
		if _, err := cli.Revoke(ctx, lease.ID); err != nil {
			t.Fatal(err)
		}
		err = store.Save(ctx, "shardId-1", checkpoint.Checkpoint{Position: "2"})
		if !errors.Is(err, checkpoint.ErrFenced) {
			t.Fatalf("Save after losing the claim = %v, want ErrFenced", err)
		}
		if got, _, _ := store.Load(ctx, "shardId-1"); got.Position != "1" {
			t.Errorf("fenced Save moved the checkpoint to %q", got.Position)
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := checkpoint.NewMemory().Save(ctx, "x", checkpoint.Checkpoint{}); !errors.Is(err, context.Canceled) {
			t.Errorf("Save = %v", err)
		}
	})
}
