#pragma once

// For the files that define a shared library's function for the whole
// process (openssl_errors.cpp, basp_guard.cpp): finds the library's own
// definition to call after the check.

#include <dlfcn.h>

#include <cstdlib>
#include <iostream>

namespace mnemo::runtime::detail {

/// The next definition of `name` after this one (the library's), as `Fn`;
/// aborts naming `library` if there is none.
template <class Fn>
Fn next_definition(const char* name, const char* library) {
  auto* fn = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, name));
  if (fn == nullptr) {
    std::cerr << "mnemo: " << library << " has no " << name << "\n";
    std::abort();
  }
  return fn;
}

}  // namespace mnemo::runtime::detail
