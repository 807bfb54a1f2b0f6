# cmake -DBINARY=PATH -P check_allocator.cmake
#
# Checks that an executable built with MNEMO_JEMALLOC takes malloc and free
# from jemalloc: libjemalloc must be among its direct dependencies and come
# before libc, since the dynamic linker resolves a symbol from the first
# library in that order which defines it.
execute_process(COMMAND readelf -d "${BINARY}" OUTPUT_VARIABLE dyn
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "readelf -d ${BINARY} failed (${rc})")
endif()
string(REGEX MATCHALL "Shared library: \\[[^]]+\\]" needed "${dyn}")
list(FIND needed "Shared library: [libjemalloc.so.2]" je)
list(FIND needed "Shared library: [libc.so.6]" libc)
if(je EQUAL -1)
  message(FATAL_ERROR "${BINARY} is not linked with libjemalloc.so.2: "
    "${needed}")
endif()
if(libc EQUAL -1 OR NOT je LESS libc)
  message(FATAL_ERROR "${BINARY}: libjemalloc.so.2 does not come before "
    "libc.so.6, so glibc's malloc would be used: ${needed}")
endif()
message(STATUS "${BINARY}: malloc from jemalloc")
