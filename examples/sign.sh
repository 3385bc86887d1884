#!/bin/sh
# sign.sh ID CMDLINE [ARG...] — print a task-job task as JSON, signed with
# HMAC-SHA256 over its canonical form (README "Signed submissions"). Needs
# sh and openssl only.
#
#   KEY_ID     the key's id, as named in the executor's signing_keys_dir
#   KEY_FILE   the secret: the same bytes as the executor's key file (one
#              trailing newline is ignored, as the executor does)
#   TYPE, TUBE the task's type and tube (default "job" and "")
#   TIMEOUT    whole seconds (default 0 = none)
#   TS         the signing time, Unix seconds (default now)
#   SIGN=no    print the task unsigned
#
# Values are written into JSON as they are, so they may not hold a double
# quote, a backslash or a control character (the script refuses them).
set -eu
[ $# -ge 2 ] || { echo "usage: sign.sh ID CMDLINE [ARG...]" >&2; exit 2; }
export LC_ALL=C # lengths in bytes, not characters
id=$1
shift
type=${TYPE:-job}
tube=${TUBE:-}
timeout=${TIMEOUT:-0}
case $timeout in '' | *[!0-9]*) echo "sign.sh: TIMEOUT must be whole seconds" >&2; exit 2 ;; esac

check() {
	case $1 in *'"'* | *\\*) echo "sign.sh: a double quote or backslash in \"$1\"" >&2; exit 2 ;; esac
	if [ "$(printf %s "$1" | tr -d '\000-\037\177' | wc -c)" -ne "$(printf %s "$1" | wc -c)" ]; then
		echo "sign.sh: a control character in a value" >&2
		exit 2
	fi
}
field() { printf '%d:%s\n' "$(printf %s "$1" | wc -c)" "$1"; }

for v in "$id" "$type" "$tube" "$@"; do check "$v"; done
cmdline=$1
shift
args=""
for a in "$@"; do args="$args${args:+,}\"$a\""; done
spec="\"cmdline\":\"$cmdline\",\"cmd_args\":[$args]"
[ "$timeout" = 0 ] || spec="$spec,\"timeout\":$timeout"
body="\"id\":\"$id\",\"type\":\"$type\",\"tube\":\"$tube\",\"task\":{$spec}"

if [ "${SIGN:-yes}" = no ]; then
	printf '{%s}\n' "$body"
	exit 0
fi
: "${KEY_ID:?set KEY_ID to the signing key id}" "${KEY_FILE:?set KEY_FILE to the secret file}"
check "$KEY_ID"
ts=${TS:-$(date +%s)}
# The secret as hex, so any bytes pass through argv; minus one trailing newline.
key=$(od -An -v -tx1 "$KEY_FILE" | tr -d ' \n')
case $key in *0d0a) key=${key%0d0a} ;; *0a) key=${key%0a} ;; esac
mac=$({
	field task-job-sig-v1
	field "$KEY_ID"
	field "$ts"
	field "$id"
	field "$type"
	field "$tube"
	field "$cmdline"
	field "$((timeout * 1000))"
	field "$#"
	for a in "$@"; do field "$a"; done
} | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key" | sed 's/.*= *//')
printf '{%s,"sig":{"key":"%s","ts":%s,"mac":"%s"}}\n' "$body" "$KEY_ID" "$ts" "$mac"
