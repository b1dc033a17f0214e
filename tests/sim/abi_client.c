/* A plain-C client of the launcher ABI, as the mock Metal framework uses it: dlopen a library
 * built by `python -m tests.support.mslsim compile`, run unary_neg_f32, then a failing launch.
 * Built and run by test_toolchain.py. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "mslsim_abi.h"

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 3; }
  mslsim_abi_version_fn version = (mslsim_abi_version_fn)dlsym(lib, "mslsim_abi_version");
  mslsim_module_info_fn info = (mslsim_module_info_fn)dlsym(lib, "mslsim_module_info");
  mslsim_launcher neg = (mslsim_launcher)dlsym(lib, "mslsim_kernel_unary_neg_f32");
  if (!version || !info || !neg || version() != MSLSIM_ABI_VERSION) return 4;
  if (!strstr(info(), "\"unary_neg_f32\"")) return 5;

  float x[100], y[100];
  int64_t n = 100;
  for (int i = 0; i < 100; ++i) { x[i] = (float)i + 0.5f; y[i] = 0.0f; }
  void *buffers[3] = {x, y, &n};
  uint64_t lengths[3] = {sizeof x, sizeof y, sizeof n};
  mslsim_dispatch d;
  memset(&d, 0, sizeof d);
  d.abi_version = MSLSIM_ABI_VERSION;
  d.grid_mode = MSLSIM_GRID_THREADS;
  d.grid[0] = 100; d.grid[1] = 1; d.grid[2] = 1;
  d.threadgroup[0] = 32; d.threadgroup[1] = 1; d.threadgroup[2] = 1;
  d.n_buffers = 3;
  d.buffers = buffers;
  d.buffer_lengths = lengths;
  if (neg(&d) != MSLSIM_STATUS_OK) { fprintf(stderr, "%s\n", d.error); return 6; }
  for (int i = 0; i < 100; ++i)
    if (y[i] != -x[i]) return 7;

  d.n_buffers = 2; /* the args struct is missing */
  int status = neg(&d);
  printf("status=%d error=%s\n", status, d.error);
  dlclose(lib);
  return status == MSLSIM_STATUS_INVALID_DISPATCH ? 0 : 8;
}
