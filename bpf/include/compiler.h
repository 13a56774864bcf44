/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#ifndef KERNEYE_COMPILER_H
#define KERNEYE_COMPILER_H

#define FUNC_INLINE static inline __attribute__((always_inline))
#ifndef likely
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
/* Mask v in a way the compiler cannot fold away, so that the verifier sees
 * the bound (clang drops "& mask" it can prove redundant, losing the
 * register range the verifier needs). mask must be a literal. */
#define ASM_BOUND(v, mask) asm volatile("%[x] &= " #mask : [x] "+r"(v))

#endif
/* Keep the verifier's view of an offset bounded: off & mask. */
#define BOUND(off, mask) ((off) & (mask))

/* Mask v in a way the compiler cannot fold away, so that the verifier sees
 * the bound (clang drops "& mask" it can prove redundant, losing the
 * register range the verifier needs). mask must be a literal. */
#define ASM_BOUND(v, mask) asm volatile("%[x] &= " #mask : [x] "+r"(v))

#endif
