/* mc_error.c -- thread-local last error and status names. */
#include <stdarg.h>
#include <stdio.h>

#include "mc_device.h"

#if defined(_MSC_VER)
#define MC_THREAD_LOCAL __declspec(thread)
#else
#define MC_THREAD_LOCAL _Thread_local
#endif

static MC_THREAD_LOCAL char tls_message[1024];

const char *mc_last_error(void) { return tls_message; }

void mc_clear_error(void) { tls_message[0] = '\0'; }

mc_status mc_set_error(mc_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tls_message, sizeof tls_message, fmt, ap);
  va_end(ap);
  return status;
}

const char *mc_status_name(mc_status status) {
  switch (status) {
    case MC_OK: return "MC_OK";
    case MC_INVALID_ARGUMENT: return "MC_INVALID_ARGUMENT";
    case MC_COMPILE_ERROR: return "MC_COMPILE_ERROR";
    case MC_OUT_OF_MEMORY: return "MC_OUT_OF_MEMORY";
    case MC_COMMAND_BUFFER_ERROR: return "MC_COMMAND_BUFFER_ERROR";
    case MC_NO_DEVICE: return "MC_NO_DEVICE";
    case MC_DEVICE_ERROR_STICKY: return "MC_DEVICE_ERROR_STICKY";
    case MC_NOT_FOUND: return "MC_NOT_FOUND";
    case MC_INTERNAL: return "MC_INTERNAL";
  }
  return "MC_UNKNOWN_STATUS";
}
