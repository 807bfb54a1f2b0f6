#pragma once

// Maps a journal stream id back to the aggregate id it belongs to.

#include <optional>
#include <string>

namespace orders {

/// Returns the aggregate id of stream `stream_id` if it is a stream of
/// aggregate type `A` ("<type_name>-<id>", as `mnemo::actors::stream_of<A>`
/// forms it, e.g. "payment-o-17" -> "o-17"), else nothing. An empty id is
/// nothing too.
template <class A>
std::optional<std::string> entity_id_of(const std::string& stream_id) {
  std::string prefix = std::string{A::type_name} + "-";
  if (stream_id.size() <= prefix.size() ||
      stream_id.compare(0, prefix.size(), prefix) != 0)
    return std::nullopt;
  return stream_id.substr(prefix.size());
}

}  // namespace orders
