# mnemo_add_module(NAME SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
#
# Creates the library target mnemo_<NAME> with the alias mnemo::<NAME>, its
# public include root <module>/include, the project's warning flags, and the
# install and export rules of the `mnemo` CMake package.
function(mnemo_add_module name)
  cmake_parse_arguments(M "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  set(target mnemo_${name})
  add_library(${target} ${M_SOURCES})
  add_library(mnemo::${name} ALIAS ${target})
  set_target_properties(${target} PROPERTIES
    EXPORT_NAME ${name}
    POSITION_INDEPENDENT_CODE ON)
  target_compile_features(${target} PUBLIC cxx_std_17)
  target_include_directories(${target}
    PUBLIC
      $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
      $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
    PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(${target}
    PUBLIC ${M_PUBLIC_DEPS}
    PRIVATE ${M_PRIVATE_DEPS})
  mnemo_warnings(${target})
  install(TARGETS ${target} EXPORT mnemoTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endfunction()

# mnemo_warnings(TARGET): the project's warning flags (STYLE.md).
function(mnemo_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -pedantic)
  if(MNEMO_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# mnemo_allocator(TARGET): for the executables that run the runtime under
# load (the example nodes, the benchmarks). With MNEMO_JEMALLOC they use
# jemalloc instead of glibc's malloc: messages allocated on one thread and
# freed on another are the runtime's common case, and glibc's per-thread
# arenas handle them poorly (a sixth of the bank node's CPU samples
# were in malloc and free; docs/bank-node.md). The libraries themselves never
# choose an allocator for their users. Defines MNEMO_ALLOCATOR ("jemalloc"
# or "system") for the JSON lines of the benchmarks.
function(mnemo_allocator target)
  if(MNEMO_JEMALLOC)
    target_link_libraries(${target} PRIVATE Jemalloc::Jemalloc)
    target_compile_definitions(${target} PRIVATE MNEMO_ALLOCATOR="jemalloc")
  else()
    target_compile_definitions(${target} PRIVATE MNEMO_ALLOCATOR="system")
  endif()
endfunction()
