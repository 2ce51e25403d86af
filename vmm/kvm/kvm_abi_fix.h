/* Force-included into every cairn translation unit (see CMakeLists.txt).
 *
 * The uapi headers declare flexible array members with __DECLARE_FLEX_ARRAY,
 * which wraps them in an anonymous struct with an empty struct member. An
 * empty struct has size 0 in C but 1 in C++, so in C++ sizeof(kvm_cpuid2) is
 * 12 instead of 8, `entries` sits at the wrong offset, and every ioctl number
 * computed from such a struct (KVM_GET_SUPPORTED_CPUID, KVM_SET_CPUID2,
 * KVM_GET/SET_MSRS, KVM_GET_MSR_INDEX_LIST, KVM_GET/SET_XSAVE, ...) is one the
 * kernel rejects with EINVAL. Declaring them as GNU zero-length arrays gives
 * the kernel's C layout. static_asserts in vmm/kvm/kvm_system.cpp check it. */
#ifndef CAIRN_KVM_ABI_FIX_H
#define CAIRN_KVM_ABI_FIX_H
#include <linux/stddef.h>
#undef __DECLARE_FLEX_ARRAY
#define __DECLARE_FLEX_ARRAY(TYPE, NAME) TYPE NAME[0]
#endif
