# _metal_hooks.pxi -- test hooks of the pure-C test driver and of the mock Metal framework
# (included by _metal.pyx). Not part of the user API.

cdef extern from "mc_test_driver.h" nogil:
    ctypedef struct mc_test_driver_stats:
        int64_t live_devices, live_buffers, live_libraries, live_pipelines, live_commands
        int64_t buffer_allocations, pipeline_builds, commits, barriers, dispatches_run, waits
        int64_t violations
        char first_violation[256]
    void mc_test_driver_get_stats(mc_test_driver_stats *out)
    void mc_test_driver_reset_stats()
    void mc_test_driver_fail_allocations(int n)
    void mc_test_driver_fail_commands(int n)
    void mc_test_driver_set_async(int on)
    void mc_test_driver_drain()
    const char *mc_test_driver_trace()

cdef extern from "mc_mock_bridge.h" nogil:
    int MC_HAVE_MOCK
    long mockmetal_live_objects()
    long mockmetal_validation_errors()
    const char *mockmetal_first_validation_error()
    long mockmetal_commits()
    long mockmetal_kernel_runs()
    long mockmetal_pipeline_builds()
    long mockmetal_compiler_runs()
    long mockmetal_barriers()
    void mockmetal_reset_counters()
    void mockmetal_fail_allocations(int n)
    void mockmetal_fail_command_buffers(int n)
    void mockmetal_fail_compiles(int n)
    void mockmetal_set_compiler_command(const char *command)
    const char *mockmetal_compiler_command()
    void mockmetal_set_workers(unsigned n)


def test_driver_stats():
    cdef mc_test_driver_stats s
    mc_test_driver_get_stats(&s)
    return {"live_devices": s.live_devices, "live_buffers": s.live_buffers, "live_libraries": s.live_libraries,
            "live_pipelines": s.live_pipelines, "live_commands": s.live_commands,
            "buffer_allocations": s.buffer_allocations, "pipeline_builds": s.pipeline_builds,
            "commits": s.commits, "barriers": s.barriers, "dispatches_run": s.dispatches_run, "waits": s.waits,
            "violations": s.violations, "first_violation": s.first_violation.decode()}


def test_driver_reset():
    mc_test_driver_reset_stats()
    mc_test_driver_set_async(0)


def test_driver_fail_allocations(int n):
    mc_test_driver_fail_allocations(n)


def test_driver_fail_commands(int n):
    mc_test_driver_fail_commands(n)


def test_driver_set_async(bint on):
    mc_test_driver_set_async(on)


def test_driver_drain():
    mc_test_driver_drain()


def test_driver_trace():
    return mc_test_driver_trace().decode()


def mock_available():
    """True in the -Dmetal=mock build (Metal driver over the mock framework + simulator)."""
    return bool(MC_HAVE_MOCK)


def mock_counters():
    return {"live_objects": mockmetal_live_objects(), "validation_errors": mockmetal_validation_errors(),
            "first_validation_error": mockmetal_first_validation_error().decode(),
            "commits": mockmetal_commits(), "kernel_runs": mockmetal_kernel_runs(),
            "pipeline_builds": mockmetal_pipeline_builds(), "compiler_runs": mockmetal_compiler_runs(),
            "barriers": mockmetal_barriers()}


def mock_live_objects():
    return mockmetal_live_objects()


def mock_reset_counters():
    mockmetal_reset_counters()


def mock_fail_allocations(int n):
    mockmetal_fail_allocations(n)


def mock_fail_command_buffers(int n):
    mockmetal_fail_command_buffers(n)


def mock_fail_compiles(int n):
    mockmetal_fail_compiles(n)


def mock_set_compiler_command(command):
    if command is None:
        mockmetal_set_compiler_command(NULL)
    else:
        b = command.encode()
        mockmetal_set_compiler_command(b)


def mock_compiler_command():
    return mockmetal_compiler_command().decode()


def mock_set_workers(unsigned n):
    mockmetal_set_workers(n)
