#include "mnemo/runtime/console.hpp"

#include <iostream>
#include <mutex>
#include <string>

namespace mnemo::runtime {

namespace {

std::mutex& console_mutex() {
  static std::mutex mtx;
  return mtx;
}

}  // namespace

void print_line(std::ostream& out, std::string_view line) {
  std::string whole;
  whole.reserve(line.size() + 1);
  whole.append(line).push_back('\n');
  std::lock_guard<std::mutex> guard{console_mutex()};
  out.write(whole.data(), static_cast<std::streamsize>(whole.size()));
  out.flush();
}

void print_line(std::string_view line) {
  print_line(std::cout, line);
}

}  // namespace mnemo::runtime
