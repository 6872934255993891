#!/bin/sh
# Regenerates the committed stubs beside this script from grpc_predict_v2.proto; a dev step,
# run from anywhere after editing the proto: `sh app/kserve_v2/generate.sh`.
#
# grpcio-tools is no runtime dependency: it lives in a throwaway venv. Its version matters:
# its protoc stamps the _pb2 files with a protobuf version and the _pb2_grpc file with a grpcio
# version, and both refuse to import on an older runtime. 1.81.1 bundles protobuf 6.33.5 and
# needs grpcio >= 1.81.1, which fits requirements.lock (protobuf 6.33.x, grpcio 1.85.1).
set -eu
TOOLS_VERSION=1.81.1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV=${TMPDIR:-/tmp}/rayvino-grpcio-tools-$TOOLS_VERSION
PYTHON=${PYTHON:-python3.11}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "grpcio-tools==$TOOLS_VERSION" \
    "$(grep '^protobuf==' "$ROOT/requirements.lock")" "$(grep '^grpcio==' "$ROOT/requirements.lock")"
# Run from the repository root so the generated imports read `from app.kserve_v2 import ...`.
cd "$ROOT"
"$VENV/bin/python" -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. \
    app/kserve_v2/grpc_predict_v2.proto
# One edit to protoc's output: register the descriptors in a pool of their own, not protobuf's
# default pool. Any other copy of the KServe/Triton proto (tritonclient.grpc's service_pb2, a
# user's loader or node) defines the same `inference.*` symbols, and the default pool refuses a
# second definition ("duplicate symbol"), so the first import would break the other.
sed -i 's/^DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(/_POOL = _descriptor_pool.DescriptorPool()  # see generate.sh\nDESCRIPTOR = _POOL.AddSerializedFile(/' \
    app/kserve_v2/grpc_predict_v2_pb2.py
grep -q '^DESCRIPTOR = _POOL.AddSerializedFile(' app/kserve_v2/grpc_predict_v2_pb2.py
echo "generated app/kserve_v2/grpc_predict_v2_pb2{.py,.pyi,_grpc.py} with grpcio-tools $TOOLS_VERSION"
