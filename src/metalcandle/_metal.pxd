# _metal.pxd -- C declarations of the native device (src/native/mc_device.h) and the Cython
# classes of metalcandle._metal, for modules that cimport them (the executor's hot path).
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t


cdef extern from "mc_device.h" nogil:
    ctypedef enum mc_status:
        MC_OK
        MC_INVALID_ARGUMENT
        MC_COMPILE_ERROR
        MC_OUT_OF_MEMORY
        MC_COMMAND_BUFFER_ERROR
        MC_NO_DEVICE
        MC_DEVICE_ERROR_STICKY
        MC_NOT_FOUND
        MC_INTERNAL

    const char *mc_last_error()
    const char *mc_status_name(mc_status status)

    ctypedef struct mc_driver:
        pass
    ctypedef struct mc_device:
        pass
    ctypedef struct mc_buffer:
        pass
    ctypedef struct mc_pipeline:
        pass

    ctypedef struct mc_device_info:
        char name[128]
        uint64_t max_working_set
        uint32_t max_threads_per_threadgroup
        uint32_t unified_memory

    mc_status mc_device_new(const mc_driver *driver, mc_device **out)
    void mc_device_free(mc_device *dev)
    void mc_device_info_get(const mc_device *dev, mc_device_info *out)
    mc_status mc_device_load_library(mc_device *dev, const char *source, const char *label)

    enum:
        MC_CONST_BOOL
        MC_CONST_INT32
        MC_CONST_UINT32
        MC_CONST_FLOAT32
        MC_CONST_FLOAT16
        MC_CONST_INT64
        MC_CONST_UINT64
        MC_MAX_FUNCTION_CONSTANTS
        MC_MAX_BINDINGS
        MC_MAX_BYTES_ARG
        MC_ACCESS_READ
        MC_ACCESS_WRITE
        MC_ACCESS_READ_WRITE

    ctypedef union mc_constant_value:
        uint8_t b
        int32_t i32
        uint32_t u32
        float f32
        uint16_t u16
        int64_t i64
        uint64_t u64

    ctypedef struct mc_constant:
        const char *name
        uint32_t index
        uint32_t type
        mc_constant_value value

    mc_status mc_device_pipeline(mc_device *dev, const char *name, const char *dtype, const mc_constant *constants,
                                 uint32_t n_constants, mc_pipeline **out)
    uint32_t mc_pipeline_max_threads(const mc_pipeline *p)
    const char *mc_pipeline_function(const mc_pipeline *p)

    mc_status mc_buffer_new(mc_device *dev, size_t nbytes, mc_buffer **out)
    void mc_buffer_free(mc_buffer *buf)
    void *mc_buffer_contents(const mc_buffer *buf)
    size_t mc_buffer_size(const mc_buffer *buf)
    size_t mc_buffer_capacity(const mc_buffer *buf)

    ctypedef struct mc_binding:
        mc_buffer *buffer
        uint64_t offset
        const void *bytes
        uint32_t length
        uint32_t index
        uint32_t access

    ctypedef enum mc_grid_mode:
        MC_GRID_THREADGROUPS
        MC_GRID_THREADS

    mc_status mc_device_dispatch(mc_device *dev, mc_pipeline *pipeline, const mc_binding *bindings, uint32_t n,
                                 const uint32_t grid[3], const uint32_t threadgroup[3], mc_grid_mode mode)
    mc_status mc_device_commit(mc_device *dev)
    mc_status mc_device_sync(mc_device *dev)
    mc_status mc_device_reset(mc_device *dev)
    int mc_device_is_sticky(const mc_device *dev)

    mc_status mc_device_set_commit_every(mc_device *dev, uint32_t n)
    mc_status mc_device_set_max_in_flight(mc_device *dev, uint32_t n)
    uint64_t mc_device_set_cache_limit(mc_device *dev, uint64_t nbytes)
    void mc_device_clear_cache(mc_device *dev)

    ctypedef struct mc_stats:
        uint64_t dispatches
        uint64_t command_buffers
        uint64_t barriers
        uint64_t pipeline_compiles
        uint64_t pipeline_hits
        uint64_t active_bytes
        uint64_t peak_bytes
        uint64_t cached_bytes
        uint64_t cache_limit
        uint64_t buffer_allocations
        uint64_t buffer_reuses
        uint64_t oom_retries
        uint64_t in_flight
        uint64_t live_buffers
        uint32_t commit_every
        uint32_t max_in_flight

    void mc_device_stats(mc_device *dev, mc_stats *out)
    const mc_driver *mc_metal_driver()
    const mc_driver *mc_test_driver()
    const char *mc_driver_name(const mc_driver *driver)


cdef int check(mc_status status) except -1


cdef class Device:
    cdef mc_device *dev
    cdef readonly str driver
    cdef readonly object shader_dir
    cdef set _loaded_families
    cdef object _family_lock
    cdef object __weakref__
    cdef int _open(self) except -1
    cdef Pipeline _pipeline(self, str name, object dtype, object constants)


cdef class Buffer:
    cdef mc_buffer *buf
    cdef readonly Device device
    cdef Py_ssize_t _exports
    cdef int _live(self) except -1


cdef class Pipeline:
    cdef mc_pipeline *p
    cdef readonly Device device
