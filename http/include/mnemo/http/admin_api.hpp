#pragma once

// The admin endpoints every example node serves (projections, and the
// shard logs of a replicated cluster), as data:
// `parse` maps an /admin/... request to one admin operation or a client
// error. The nodes' APIs include these operations in their own.

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "mnemo/http/api_support.hpp"

namespace mnemo::http::admin_api {

/// GET /admin/projections: the status of every projection.
struct list_projections {};
/// POST /admin/projections/{name}/{pause|resume|rebuild}
struct manage_projection {
  std::string name;
  /// "pause", "resume" or "rebuild".
  std::string action;
};
/// GET /admin/projections/{name}/dead-letters[?from=POSITION&limit=N]:
/// dead letters from journal position `from` (default 0), at most `limit`
/// (1 to 1000, default 100).
struct list_dead_letters {
  std::string name;
  uint64_t from = 0;
  size_t limit = 100;
};
/// POST /admin/projections/{name}/dead-letters/{position}/{retry|drop}
struct manage_dead_letter {
  std::string name;
  uint64_t position = 0;
  /// "retry" or "drop".
  std::string action;
};

/// GET /admin/shards/{n}: this member's replica of shard n in a replicated
/// cluster (its end, a digest of its log, its epochs, who leads), answered
/// by the node itself, not the projection supervisor.
struct get_shard {
  uint32_t shard = 0;
};

using operation =
    std::variant<list_projections, manage_projection, list_dead_letters,
                 manage_dead_letter, get_shard>;

using parsed = std::variant<operation, api_support::client_error>;

/// Maps an admin request to its operation. `seg` are the path segments of
/// `target` (`api_support::segments_of`), `seg[0]` is "admin"; projection
/// names are ids of up to `max_id` characters. Errors: 404 `not_found`
/// (any other path), 405 `method_not_allowed`, 400 `invalid_id` (a bad
/// projection name), `invalid_query` (a position that is not a number, a
/// dead-letter query with an unknown parameter, a bad `from`, or a limit
/// that is not 1 to 1000, a shard that is not a number, or a malformed
/// percent-escape).
parsed parse(const std::string& method, const std::vector<std::string>& seg,
             const std::string& target, size_t max_id);

/// Parses as `parse` does, into an API's own result type: `Operation` is
/// that API's operation variant, which includes the admin operations.
template <class Operation>
std::variant<Operation, api_support::client_error> parse_as(
    const std::string& method, const std::vector<std::string>& seg,
    const std::string& target, size_t max_id) {
  auto result = parse(method, seg, target, max_id);
  if (auto* err = std::get_if<api_support::client_error>(&result))
    return std::move(*err);
  return api_support::widen<Operation>(std::get<operation>(std::move(result)));
}

}  // namespace mnemo::http::admin_api
