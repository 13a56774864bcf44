#!/bin/sh
# Regenerate the pinned kernel type dump used to compile the BPF objects.
# CO-RE relocates field accesses at load time, so any recent kernel's dump
# works on others; regenerate only to use newer types.
set -e
arch=$(uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')
mkdir -p "$(dirname "$0")/../bpf/include/vmlinux/$arch"
bpftool btf dump file /sys/kernel/btf/vmlinux format c > "$(dirname "$0")/../bpf/include/vmlinux/$arch/vmlinux.h"
