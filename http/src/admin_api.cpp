#include "mnemo/http/admin_api.hpp"

#include <optional>

namespace mnemo::http::admin_api {

using namespace api_support;

namespace {

parsed dead_letters(const std::string& name, const std::string& target) {
  auto params = query_of(target);
  if (auto* err = std::get_if<client_error>(&params)) return std::move(*err);
  list_dead_letters op{name, 0, 100};
  for (auto& [key, value] : std::get<query>(params)) {
    std::optional<uint64_t> n;
    if (key == "from")
      n = number_of(value, UINT64_MAX / 2);
    else if (key == "limit")
      n = number_of(value, 1000);
    if (!n || (key == "limit" && *n == 0))
      return bad_request("invalid_query",
                         "from is a position, limit 1 to 1000");
    if (key == "from")
      op.from = *n;
    else
      op.limit = static_cast<size_t>(*n);
  }
  return operation{op};
}

}  // namespace

parsed parse(const std::string& method, const std::vector<std::string>& seg,
             const std::string& target, size_t max_id) {
  // seg: admin, shards, n
  if (seg.size() == 3 && seg[1] == "shards") {
    if (method != "GET") return method_not_allowed(method);
    auto shard = number_of(seg[2], UINT32_MAX);
    if (!shard)
      return bad_request("invalid_query",
                         "not a shard number: " + seg[2].substr(0, 40));
    return operation{get_shard{static_cast<uint32_t>(*shard)}};
  }
  // seg: admin, projections[, name[, action | dead-letters[, pos, action]]]
  if (seg.size() < 2 || seg.size() > 6 || seg[1] != "projections")
    return not_found(target);
  if (seg.size() == 2) {
    if (method != "GET") return method_not_allowed(method);
    return operation{list_projections{}};
  }
  auto& name = seg[2];
  if (!valid_id(name, max_id)) return invalid_path_id("projection", max_id);
  if (seg.size() == 4 && seg[3] != "dead-letters") {
    if (seg[3] != "pause" && seg[3] != "resume" && seg[3] != "rebuild")
      return not_found(target);
    if (method != "POST") return method_not_allowed(method);
    return operation{manage_projection{name, seg[3]}};
  }
  if (seg.size() == 4) {
    if (method != "GET") return method_not_allowed(method);
    return dead_letters(name, target);
  }
  if (seg.size() == 6 && seg[3] == "dead-letters" &&
      (seg[5] == "retry" || seg[5] == "drop")) {
    auto position = number_of(seg[4], UINT64_MAX / 2);
    if (!position)
      return bad_request("invalid_query",
                         "not a position: " + seg[4].substr(0, 40));
    if (method != "POST") return method_not_allowed(method);
    return operation{manage_dead_letter{name, *position, seg[5]}};
  }
  return not_found(target);
}

}  // namespace mnemo::http::admin_api
