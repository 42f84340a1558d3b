#!/usr/bin/env bash
# build.sh builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler
# and kubelet from their official Go modules (pinned in this directory's go.mod) into a cache outside
# the repository, keyed by version, and prints that directory. It rebuilds only
# what is missing, so after the first run (several minutes on 2 cores) it
# returns at once.
set -euo pipefail

K8S_VERSION=v1.37.2
ETCD_VERSION=v3.7.0
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=${LEADER_ELECTOR_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/leader-elector/bin}/$K8S_VERSION-etcd-$ETCD_VERSION
mkdir -p "$bin"
# Test packages run in parallel and may all ask for a build: one at a time.
exec 9>"$bin/.lock"
flock 9

ver=k8s.io/component-base/version
k8s_ldflags="-s -w -X $ver.gitVersion=$K8S_VERSION -X $ver.gitMajor=1 -X $ver.gitMinor=37 -X $ver.gitTreeState=clean -X $ver.buildDate=1970-01-01T00:00:00Z"
k8s_ldflags="$k8s_ldflags -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=37"

build() { # name package ldflags
	local name=$1 pkg=$2 ldflags=$3
	if [ -x "$bin/$name" ]; then return 0; fi
	echo "controlplane: building $name from $pkg (once; the first build takes minutes on 2 cores)..." >&2
	local start=$SECONDS
	(cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin/$name.tmp" "$pkg")
	mv "$bin/$name.tmp" "$bin/$name"
	echo "controlplane: built $name in $((SECONDS - start))s" >&2
}

build etcd go.etcd.io/etcd/server/v3 "-s -w"
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
# The node for the real-pod tests (test/testcluster/node.go): under a
# minute each once the control plane's packages are in the build cache.
build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$k8s_ldflags"
build kubelet k8s.io/kubernetes/cmd/kubelet "$k8s_ldflags"
echo "$bin"
