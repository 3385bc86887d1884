package redisqueue

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskjob/task-job/test/redisserver"
)

func clusterQueue(t *testing.T, c *redisserver.Cluster, name string, tubes ...string) *Queue {
	t.Helper()
	q := New(redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()}),
		Options{Names: clusterNames, ExecutorID: fmt.Sprintf("%s-%d", name, os.Getpid()), Retention: time.Hour, TTL: time.Second, Tubes: tubes})
	if err := q.Join(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// On a Cluster, the tube list the take script builds from a task's tube
// is in the script's slot, and the tube lists status reports are found on
// the node that holds the queue's slot, whichever node a SCAN would pick.
func TestTubesOnCluster(t *testing.T) {
	c := redisserver.StartCluster(t)
	rdb := c.Client(t)
	ctx := context.Background()
	plain := clusterQueue(t, c, "plain")
	build := clusterQueue(t, c, "build", "build")
	rdb.RPush(ctx, "{q}", `{"id":"1","tube":"build"}`, `{"id":"2","tube":"gpu"}`, `{"id":"3"}`)
	if d := takeNow(t, plain); d == nil || string(d.Raw) != `{"id":"3"}` {
		t.Fatalf("untubed executor took %+v", d)
	}
	if d := takeNow(t, build); d == nil || d.Tube != "build" {
		t.Fatalf("build executor took %+v", d)
	}
	// SCAN goes to one node of the client's choice: ask often enough that
	// every node would have been picked.
	for range 2 * len(c.Nodes) {
		st, err := plain.TubeStates(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var tubes []string
		for _, s := range st {
			tubes = append(tubes, s.Tube)
		}
		if want := []string{"", "build", "gpu"}; !reflect.DeepEqual(tubes, want) {
			t.Fatalf("TubeStates lists tubes %q, want %q", tubes, want)
		}
	}
}

// Keys without a shared hash tag are refused by the Cluster as soon as a
// take moves a task: why a cluster config must tag queue_name.
func TestUntaggedNamesFailOnCluster(t *testing.T) {
	c := redisserver.StartCluster(t)
	q := New(redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()}),
		Options{Names: names, ExecutorID: fmt.Sprintf("untagged-%d", os.Getpid()), TTL: time.Second})
	defer q.Close()
	ctx := context.Background()
	c.Client(t).RPush(ctx, names.Tasks, `{"id":"1"}`)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := q.Take(ctx); err == nil {
		t.Fatal("a take across slots succeeded")
	} else if !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("a take across slots failed otherwise: %v", err)
	}
}
