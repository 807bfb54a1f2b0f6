// Lines that threads of a node print at the same time stay whole.

#include <boost/test/unit_test.hpp>

#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mnemo/runtime/console.hpp"

BOOST_AUTO_TEST_SUITE(console)

BOOST_AUTO_TEST_CASE(lines_printed_by_many_threads_never_interleave) {
  std::ostringstream out;
  constexpr int threads = 8;
  constexpr int lines = 400;
  auto line_of = [](int t, int i) {
    // Long enough that a spliced write would show.
    return "{\"event\":\"test\",\"thread\":" + std::to_string(t) +
           ",\"line\":" + std::to_string(i) + ",\"pad\":\"" +
           std::string(static_cast<size_t>(60 + t), 'x') + "\"}";
  };
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      for (int i = 0; i < lines; ++i)
        mnemo::runtime::print_line(out, line_of(t, i));
    });
  for (auto& w : workers) w.join();
  std::set<std::string> expected;
  for (int t = 0; t < threads; ++t)
    for (int i = 0; i < lines; ++i) expected.insert(line_of(t, i));
  std::istringstream in{out.str()};
  std::set<std::string> seen;
  size_t count = 0;
  for (std::string line; std::getline(in, line); ++count) {
    BOOST_CHECK_MESSAGE(expected.count(line) == 1, "spliced line: " << line);
    seen.insert(line);
  }
  BOOST_TEST(count == static_cast<size_t>(threads * lines));
  BOOST_TEST(seen == expected);
}

BOOST_AUTO_TEST_SUITE_END()
