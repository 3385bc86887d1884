#!/bin/sh
# Cross-builds static task-job binaries into dist/, as the original tool's
# build script did:  ./build.sh windows|linux|darwin|freebsd|all
# GOARCH defaults to amd64; set it to build for another architecture, and
# DIST to write somewhere other than dist/. dist/SHA256SUMS lists every
# binary there (check with: cd dist && sha256sum -c SHA256SUMS).
#
# On Linux the sandbox helper is built next to the binary under the
# matching name (task-job-init-linux-amd64 beside task-job-linux-amd64),
# where the executor looks for it: dist/ works as built, and installed as
# task-job and task-job-init in one directory it works the same.
set -eu
cd "$(dirname "$0")"
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
arch=${GOARCH:-amd64}
dist=${DIST:-dist}
# SOURCE_DATE_EPOCH makes the build date reproducible.
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
	date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -r "$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
else
	date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
fi
# The commit goes into the binary's build info (task-job version) when git
# can read this checkout; a copy without git still builds. Go records it only
# where .git is a directory, so it is also passed by hand (git worktrees).
buildvcs=false
git status --porcelain >/dev/null 2>&1 && buildvcs=auto
commit=$(git rev-parse HEAD 2>/dev/null || true)
ldflags="-s -w -X main.version=$version -X main.buildDate=$date -X main.commit=$commit"

build() {
	os=$1
	ext=""
	[ "$os" = windows ] && ext=.exe
	out="$dist/task-job-$os-$arch$ext"
	CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -buildvcs=$buildvcs \
		-ldflags "$ldflags" -o "$out" ./cmd/task-job
	echo "$out"
	if [ "$os" = linux ]; then
		# The sandbox's per-task setup helper, under the name the executor
		# looks for next to it.
		init="$dist/task-job-init-$os-$arch"
		CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -buildvcs=$buildvcs \
			-ldflags "-s -w" -o "$init" ./cmd/task-job-init
		echo "$init"
	fi
}

sums() {
	(
		cd "$dist"
		if command -v sha256sum >/dev/null 2>&1; then
			sha256sum task-job-* >SHA256SUMS
		else
			shasum -a 256 task-job-* >SHA256SUMS
		fi
	)
	echo "$dist/SHA256SUMS"
}

case "${1:-}" in
windows | linux | darwin | freebsd) build "$1" && sums ;;
all) for os in linux windows darwin freebsd; do build "$os"; done && sums ;;
*)
	echo "usage: $0 windows|linux|darwin|freebsd|all" >&2
	exit 2
	;;
esac
