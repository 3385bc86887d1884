package redisqueue

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"
)

// RouteClientLog sends the Redis client's own messages (one per failed dial
// while Redis is down, for instance) to log at debug level. The executor
// already reports an outage once, when it begins, and once when it ends;
// the client's per-attempt lines would bury that.
func RouteClientLog(log hclog.Logger) {
	redis.SetLogger(clientLog{log})
}

type clientLog struct{ log hclog.Logger }

func (c clientLog) Printf(_ context.Context, format string, v ...any) {
	c.log.Debug(fmt.Sprintf(format, v...))
}
