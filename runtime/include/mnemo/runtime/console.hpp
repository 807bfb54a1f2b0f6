#pragma once

// Lines on standard output that several threads of a node print.

#include <iosfwd>
#include <string_view>

namespace mnemo::runtime {

/// Writes `line` and a newline to `out` as one unit and flushes: lines
/// that threads of the process print at the same time through this
/// function never interleave. Nodes print their events (listening,
/// cluster) as JSON lines that tools and tests read one by one; without
/// this, a line printed while another thread wrote its own came out
/// spliced into it.
void print_line(std::ostream& out, std::string_view line);

/// `print_line` to standard output.
void print_line(std::string_view line);

}  // namespace mnemo::runtime
