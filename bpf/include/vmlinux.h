/* SPDX-License-Identifier: GPL-2.0-only */
/* Picks the pinned, bpftool-generated kernel type dump for the target
 * architecture (regenerate with tools/gen_vmlinux.sh). CO-RE relocations make
 * the objects portable to other kernels; this file only has to be a superset
 * of the types we touch. */
#if defined(__TARGET_ARCH_x86)
#include "vmlinux/x86/vmlinux.h"
#else
#error "kerneye: no pinned vmlinux.h for this architecture; run tools/gen_vmlinux.sh"
#endif
