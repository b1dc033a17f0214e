// mslsim_compat.h -- the MSL subset as host C++17, force-included (-include) before a
// translated .metal file. See ../README.md for the subset.
#pragma once
#include "mslsim_types.h"
#include "mslsim_math.h"
#include "mslsim_sync.h"
#include "mslsim_launch.h"

// The address-space qualifiers and `kernel` vanish. By now the front end has recorded the
// [[...]] attributes and removed them, and turned kernel-scope `threadgroup T x[N];` into
// per-threadgroup storage, so plain C++ remains. Defined last: the standard headers above
// use `thread` and `device` as identifiers.
#define kernel
#define device
#define constant
#define thread
#define threadgroup
#define threadgroup_imageblock
