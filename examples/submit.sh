#!/bin/sh
# submit.sh CMDLINE [ARG...] — submit one task to task-job, wait for its
# done, print its output lines, and exit 0 only if it succeeded.
# Needs only sh and redis-cli (plus openssl to sign: see sign.sh).
#
#   REDIS_HOST, REDIS_PORT   the Redis task-job reads (default redis:6379)
#   REDIS_USER               this container's ACL user (default web)
#   REDISCLI_AUTH            its password (redis-cli reads it from the environment)
#   TASK_PREFIX              task ids start with this (default $REDIS_USER-): the
#                            ACL lets a container read only statuses with its prefix
#   QUEUE                    queue_name (default queue_job_task)
#   TIMEOUT                  the task's timeout in whole seconds (default 0 = none)
#   WAIT                     seconds to wait for the done (default 600)
#   KEY_ID, KEY_FILE         sign the task with this key (see sign.sh)
set -eu
[ $# -ge 1 ] || { echo "usage: submit.sh CMDLINE [ARG...]" >&2; exit 2; }
here=$(dirname "$0")
q=${QUEUE:-queue_job_task}
user=${REDIS_USER:-web}
id=${TASK_ID:-${TASK_PREFIX:-$user-}$(date +%s)-$$}
r() { redis-cli -h "${REDIS_HOST:-redis}" -p "${REDIS_PORT:-6379}" --user "$user" --no-auth-warning "$@"; }

if [ -n "${KEY_FILE:-}" ]; then
	task=$(sh "$here/sign.sh" "$id" "$@")
else
	task=$(SIGN=no sh "$here/sign.sh" "$id" "$@")
fi
# redis-cli exits 0 even when the server refuses: check the reply.
out=$(r RPUSH "$q" "$task")
case $out in
'' | *[!0-9]*) echo "submit.sh: RPUSH $q refused: $out" >&2; exit 1 ;;
esac

# The done lands in the task's status record; poll it. (The task's own log
# stream usually gets it too, but not always: the done of a task recovery
# reports lost goes to the status only.)
deadline=$(( $(date +%s) + ${WAIT:-600} ))
done=""
while [ -z "$done" ]; do
	if [ "$(date +%s)" -ge "$deadline" ]; then
		echo "submit.sh: no done for task $id after ${WAIT:-600}s (is an executor running?)" >&2
		exit 124
	fi
	sleep 0.2
	done=$(r HGET "$q:status:$id" done)
	case $done in
	'' | '{'*) ;;
	*) echo "submit.sh: reading the status of $id failed: $done" >&2; exit 1 ;;
	esac
done

# Its lines (with "logs": true in the executor's config), in seq order, from
# the task's own stream $q:logs:<id>: one entry per batch, its "lines" field
# the batch's messages, one a line. The ACL lets a container read only its
# own streams, not the shared logs list that holds every task's output.
lines=$(r XRANGE "$q:logs:$id" - +)
case $lines in
'' | [0-9]*) ;;
*) echo "submit.sh: reading the lines of $id failed: $lines" >&2; exit 1 ;;
esac
printf '%s\n' "$lines" | grep -F "\"id\":\"$id\"" | grep -v '"msg_type":"done"' || true
echo "$done"
case $done in
*'"status":"succeeded"'*) exit 0 ;;
*) exit 1 ;;
esac
