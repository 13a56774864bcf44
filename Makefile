# kerneye: `make run` (set up, build, run the agent) and `make test`.
# Everything builds on an idempotent `make setup`, which installs the apt
# and pip dependencies, builds the BPF objects and leaves the CLI at
# .venv/bin/kerneye.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
APT_PKGS := clang-16 llvm-16 bpftool libbpf-dev libbpf1 libelf-dev linux-libc-dev make python3-venv python3-pip \
	util-linux iproute2 systemd \
	qemu-system-x86 linux-image-amd64 busybox-static cpio kmod
EXPORT_FILE ?= /var/log/kerneye/events.json
ARGS ?=

.PHONY: setup apt venv bpf abi run test test-unit test-vm bench clean proto

setup: apt venv bpf

apt:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.stamp: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.stamp

bpf:
	$(MAKE) -C bpf
	$(MAKE) -C tests/progs

# Regenerate src/kerneye/api/v1/ (protobuf + gRPC modules) from api/v1/**/*.proto.
proto: venv
	$(PY) tools/gen_proto.py

# Regenerate the Python mirror of bpf/include/kerneye/abi.h from BTF.
abi: bpf
	$(PY) tools/gen_abi.py

run: setup
	@mkdir -p $(dir $(EXPORT_FILE))
	$(VENV)/bin/kerneye agent --export-file $(EXPORT_FILE) --tracing-policy-dir policies --policy-mode monitor $(ARGS)

test: setup
	$(PY) -m pytest -q tests

test-unit: venv
	$(PY) -m pytest -q tests/unit

# Only the BPF-LSM VM test: boots Debian's kernel under qemu (TCG) with
# lsm=...,bpf and runs tests/vm/ inside (docs/reference/vm-tests.md).
test-vm: setup
	$(PY) -m pytest -q tests/kernel/test_vm_lsm.py

bench: setup
	$(PY) bench/exec_storm.py
	$(PY) bench/open_storm.py
	$(PY) bench/grpc_stream.py
	$(PY) bench/connect_storm.py
	$(PY) bench/enforce_open.py
	$(PY) bench/exec_allowlist.py

clean:
	$(MAKE) -C bpf clean
	rm -rf $(VENV)
