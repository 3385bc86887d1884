#!/bin/sh
# Cross-builds static task-job binaries into dist/, as the original tool's
# build script did:  ./build.sh windows|linux|darwin|freebsd|all
# GOARCH defaults to amd64; set it to build for another architecture.
set -eu
cd "$(dirname "$0")"
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
arch=${GOARCH:-amd64}

build() {
	os=$1
	ext=""
	[ "$os" = windows ] && ext=.exe
	out="dist/task-job-$os-$arch$ext"
	CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath \
		-ldflags "-s -w -X main.version=$version" -o "$out" ./cmd/task-job
	echo "$out"
	if [ "$os" = linux ]; then
		# The sandbox's per-task setup helper; install it next to task-job.
		init="dist/task-job-init-$os-$arch"
		CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -ldflags "-s -w" -o "$init" ./cmd/task-job-init
		echo "$init"
	fi
}

case "${1:-}" in
windows | linux | darwin | freebsd) build "$1" ;;
all) for os in linux windows darwin freebsd; do build "$os"; done ;;
*)
	echo "usage: $0 windows|linux|darwin|freebsd|all" >&2
	exit 2
	;;
esac
