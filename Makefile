# Two commands for a fresh machine: `make run` serves configs/config.json, `make test` runs the suite.
# Every target sets up what it needs first, and setup is idempotent.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
AZURITE := tests/storage/node_modules/.installed
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: setup models nodes run check format test unit integration cluster fuzz bench lock clean image image-tools image-base

setup: $(STAMP) $(AZURITE) models nodes

# The .pth file has every Python of the venv apply app/serve_flags.py's Ray Serve settings, so the
# Ray that `serve run`, `make run` and the tests start has them.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test]'
	$(PY) -c "import pathlib, sysconfig; \
	  pathlib.Path(sysconfig.get_paths()['purelib'], 'rayvino_serve_flags.pth').write_text('import app.serve_flags\n')"
	touch $@

# Azurite, the Azure Blob Storage emulator the az:// tests start (tests/storage_servers.py), from npm at the
# version tests/storage/package-lock.json pins. No install scripts: Azurite needs none.
$(AZURITE): tests/storage/package.json tests/storage/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "make setup: npm not found. The az:// tests need Azurite from npm:" \
	  "install Node.js 20 or later with npm (Debian: apt-get install nodejs npm), then run make setup again." >&2; exit 1; }
	npm ci --prefix tests/storage --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

models: $(STAMP)
	$(PY) scripts/setup_models.py

# The built-in C nodes (nodes/src/*.c -> nodes/lib/*.so, gcc), the crash guard every C node is
# called through (nodes/guard/guard.c -> nodes/lib/librayvino_guard.so), and the C++ loader shim
# and sample loader (loaders/src/*.cpp -> loaders/lib/*.so, g++).
nodes: $(STAMP)
	$(PY) -c "import sys, nodes.build, loaders.build; sys.exit(nodes.build.main() or loaders.build.main())"

# `make run CONFIG=configs/loaders.json` serves another config.json (serve_config.yaml's other settings aside).
CONFIG ?=
run: setup
ifeq ($(CONFIG),)
	$(PY) -m app run serve_config.yaml
else
	$(PY) -m app run app.build:build_app config_path=$(CONFIG)
endif

# The quality gate CI runs before the tests: formatting, lint (complexity at most 10) and types.
check: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Rewrite the code the way `make check` wants it formatted, and apply ruff's safe fixes.
format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The cluster tier starts a multi-node Ray cluster of its own, so it runs in a pytest process of its own.
test: setup
	$(PY) -m pytest tests/unit tests/integration
	$(PY) -m pytest tests/cluster

unit: setup
	$(PY) -m pytest tests/unit

integration: setup
	$(PY) -m pytest tests/integration

cluster: setup
	$(PY) -m pytest tests/cluster

# The fuzzing tier in full: 10,000 malformed REST and gRPC requests (make test runs a 300-case slice).
# FUZZ_SEED picks another sequence of cases; the same seed gives the same cases.
FUZZ_CASES ?= 10000
FUZZ_SEED  ?= 20260917
fuzz: setup
	RAYVINO_FUZZ_CASES=$(FUZZ_CASES) RAYVINO_FUZZ_SEED=$(FUZZ_SEED) $(PY) -m pytest tests/integration/test_fuzz.py --timeout=3600

# Benchmarks run on demand, never in the test suite; each prints ratios against a baseline.
bench: setup
	$(PY) benchmarks/front_door.py
	$(PY) benchmarks/custom_node.py
	$(PY) benchmarks/pipelines.py
	$(PY) benchmarks/scale.py
	$(PY) benchmarks/grpc_rest.py
	$(PY) benchmarks/batching.py
	$(PY) benchmarks/autoscale.py

# Regenerate the lock after changing pyproject.toml's pins.
lock:
	rm -rf /tmp/rayvino-lock && $(PYTHON) -m venv /tmp/rayvino-lock
	/tmp/rayvino-lock/bin/pip install --quiet -e '.[test]'
	(echo "# Every package rayvino installs, pinned exactly (regenerate: make lock)."; \
	 /tmp/rayvino-lock/bin/pip freeze --exclude-editable) > requirements.lock

# The container image (Containerfile), built with Debian's podman from a local Debian bookworm
# base that mmdebstrap makes (no image registry is needed: apt and PyPI are). The build runs the
# image's smoke test as a stage (podman run needs cgroups this machine's sandbox lacks), and
# podman's layer cache makes a rebuild with unchanged files take seconds.
IMAGE       ?= localhost/rayvino:latest
IMAGE_BASE  ?= localhost/rayvino-bookworm-base:latest
# podman's default ulimits make crun's setrlimit fail here; an empty list leaves the host's.
IMAGE_CONF  := build/containers.conf
# The machine's CA bundle, mounted for pip during the build (HTTPS through a proxy of its own).
IMAGE_CA    ?= /etc/ssl/certs/ca-certificates.crt
IMAGE_CA_ARGS = $(if $(wildcard $(IMAGE_CA)),--volume $(IMAGE_CA):/run/build-ca.crt:ro --build-arg PIP_CERT=/run/build-ca.crt)

image-tools:
	@command -v podman >/dev/null && command -v mmdebstrap >/dev/null || \
	  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends podman mmdebstrap; }

$(IMAGE_CONF):
	mkdir -p $(dir $@)
	printf '[containers]\ndefault_ulimits = []\n' > $@

# The same distribution as debian:bookworm-slim, made from the machine's apt sources (minbase:
# essential packages and apt, plus Python 3.11), imported once.
image-base: image-tools $(IMAGE_CONF)
	@CONTAINERS_CONF=$(abspath $(IMAGE_CONF)) podman image exists $(IMAGE_BASE) || { \
	  set -e; rm -f build/bookworm-base.tar; \
	  mmdebstrap --variant=minbase --include=python3,python3-venv bookworm build/bookworm-base.tar; \
	  CONTAINERS_CONF=$(abspath $(IMAGE_CONF)) podman import build/bookworm-base.tar $(IMAGE_BASE); \
	  rm -f build/bookworm-base.tar; }

# HAProxy (Serve's front door, started by the smoke stage) needs over 10,000 file descriptors: the
# build's steps get this shell's hard limit, as a pod's `ulimit -n 65536` would give them.
image: image-base
	CONTAINERS_CONF=$(abspath $(IMAGE_CONF)) podman build --isolation chroot --layers \
	  --ulimit nofile=$$(ulimit -Hn):$$(ulimit -Hn) \
	  --build-arg BASE=$(IMAGE_BASE) $(IMAGE_CA_ARGS) -t $(IMAGE) -f Containerfile .
	@CONTAINERS_CONF=$(abspath $(IMAGE_CONF)) podman image inspect $(IMAGE) --format 'image $(IMAGE): {{.Size}} bytes'

clean:
	rm -rf $(VENV) models build *.egg-info tests/storage/node_modules
