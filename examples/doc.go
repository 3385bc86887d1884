// Package examples holds the container side of task-job, worked: a compose
// file, a Redis ACL file (redis/users.acl), a submit script that needs only
// sh and redis-cli, a signing script in sh and openssl, and a sample Grafana
// dashboard. Nothing here is Go but the tests, which load the ACL file into
// a real redis-server, feed the scripts' output to the real verifier and
// check the dashboard's queries against the registered metrics.
package examples
