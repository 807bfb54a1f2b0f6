# FindCAF: locates the C++ Actor Framework 0.17 from Debian's libcaf-dev,
# which ships neither a CMake package nor pkg-config files.
#
# Components: core, io, openssl (core is always searched).
# Defines the imported targets CAF::core, CAF::io, CAF::openssl for the
# components found, and CAF_FOUND, CAF_INCLUDE_DIR.
find_path(CAF_INCLUDE_DIR NAMES caf/all.hpp)
set(_caf_components core ${CAF_FIND_COMPONENTS})
list(REMOVE_DUPLICATES _caf_components)
foreach(comp IN LISTS _caf_components)
  find_library(CAF_${comp}_LIBRARY NAMES caf_${comp})
  mark_as_advanced(CAF_${comp}_LIBRARY)
  if(CAF_${comp}_LIBRARY)
    set(CAF_${comp}_FOUND TRUE)
  endif()
endforeach()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(CAF
  REQUIRED_VARS CAF_INCLUDE_DIR CAF_core_LIBRARY
  HANDLE_COMPONENTS)
if(CAF_FOUND)
  find_package(Threads REQUIRED)
  foreach(comp IN LISTS _caf_components)
    if(CAF_${comp}_FOUND AND NOT TARGET CAF::${comp})
      add_library(CAF::${comp} UNKNOWN IMPORTED)
      set_target_properties(CAF::${comp} PROPERTIES
        IMPORTED_LOCATION "${CAF_${comp}_LIBRARY}"
        INTERFACE_INCLUDE_DIRECTORIES "${CAF_INCLUDE_DIR}")
      if(NOT comp STREQUAL "core")
        set_property(TARGET CAF::${comp} APPEND PROPERTY
          INTERFACE_LINK_LIBRARIES CAF::core)
      endif()
    endif()
  endforeach()
  set_property(TARGET CAF::core APPEND PROPERTY
    INTERFACE_LINK_LIBRARIES Threads::Threads)
  if(TARGET CAF::openssl)
    find_package(OpenSSL REQUIRED)
    set_property(TARGET CAF::openssl APPEND PROPERTY
      INTERFACE_LINK_LIBRARIES OpenSSL::SSL OpenSSL::Crypto)
  endif()
endif()
mark_as_advanced(CAF_INCLUDE_DIR)
