package redisserver

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// clusterMasters is how many masters StartCluster runs: the fewest Redis
// Cluster accepts.
const clusterMasters = 3

// Cluster is a Redis Cluster of three masters (no replicas) owned by a test.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts three redis-server processes with cluster mode on,
// each on free loopback ports (its client port and its cluster bus port)
// in its own t.TempDir(), joins them with redis-cli --cluster create (the
// slots split in three) and returns once every node reports
// cluster_state:ok and knows the other two. Each process is stopped at t's
// cleanup, by its own PID, as Start does.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	cli := lookBinary(t, "redis-cli")
	c := &Cluster{}
	for range clusterMasters {
		// The bus port defaults to the client port + 10000, which may be
		// taken or above 65535: give it a free port of its own.
		bus, err := freePort()
		if err != nil {
			t.Fatalf("redisserver: %v", err)
		}
		c.Nodes = append(c.Nodes, Start(t, Options{Args: []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(bus),
			"--cluster-node-timeout", "5000",
		}}))
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redisserver: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	ctx := context.Background()
	for _, n := range c.Nodes {
		rc := n.Client(t)
		err := poll(ctx, setupTimeout, func(ctx context.Context) error {
			info, err := rc.ClusterInfo(ctx).Result()
			if err != nil {
				return fmt.Errorf("CLUSTER INFO: %w", err)
			}
			want := fmt.Sprintf("cluster_known_nodes:%d", clusterMasters)
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, want) {
				return fmt.Errorf("not ready: %s", info)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("redisserver: cluster node %s: %v\n--- its log ---\n%s", n.Addr(), err, n.logsSince(0))
		}
	}
	return c
}

// Addrs returns the nodes' addresses, "127.0.0.1:port" each.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// URL is the cluster as task-job's redis_addr writes it.
func (c *Cluster) URL() string { return "cluster://" + strings.Join(c.Addrs(), ",") }

// Client returns a Cluster client, closed at t's cleanup.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}
