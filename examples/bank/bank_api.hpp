#pragma once

// The bank node's HTTP API as data: `parse` turns a request (method,
// target, body) into one typed operation or a client error, without any
// actor or I/O, so that it can be tested and fuzzed on its own. See
// docs/bank-node.md for the endpoints.

#include <cstdint>
#include <string>
#include <variant>

#include "mnemo/http/admin_api.hpp"
#include "mnemo/http/api_support.hpp"

namespace bank::api {

/// Limits the API enforces on input.
struct limits {
  /// Largest amount in minor units. Default: 10^12.
  int64_t max_amount = 1'000'000'000'000;
  /// Longest account, transfer or command id. Default: 64.
  size_t max_id = 64;
  /// Longest owner name. Default: 128.
  size_t max_owner = 128;
};

// -- operations ---------------------------------------------------------------

/// POST /accounts {"id","owner"}
struct open_account {
  std::string id;
  std::string owner;
};
/// POST /accounts/{id}/deposits and /withdrawals {"amount","command_id"?}
struct move_money {
  std::string id;
  bool deposit = true;
  int64_t amount = 0;
  std::string command_id;
};
/// POST /accounts/{id}/close {"command_id"?} (body optional)
struct close_account {
  std::string id;
  std::string command_id;
};
/// GET /accounts/{id}
struct get_account {
  std::string id;
};
/// POST /transfers {"id","from","to","amount"}
struct start_transfer {
  std::string id;
  std::string from;
  std::string to;
  int64_t amount = 0;
};
/// GET /transfers/{id}
struct get_transfer {
  std::string id;
};
/// GET /transfers?status=PHASE[&after=ID][&limit=N]: transfers in one
/// phase (running, compensating, completed, compensated, needs_attention),
/// from the saga index, in id order.
struct list_transfers {
  std::string phase;
  std::string after;
  size_t limit = 100;
};
/// GET /balances/{id}
struct get_balance {
  std::string id;
};
/// GET /balances
struct get_totals {};
/// GET /cluster/balances: the cluster-wide balances read model (every
/// member's accounts), with the offset and head of each source member.
struct get_cluster_totals {};
/// GET /health
struct get_health {};
/// GET /metrics
struct get_metrics {};
/// GET /admin/projections, POST /admin/projections/{name}/{pause|resume|
/// rebuild}, GET .../{name}/dead-letters[?from&limit], POST
/// .../{name}/dead-letters/{position}/{retry|drop}: shared by the example
/// nodes, see admin_api.hpp.
using mnemo::http::admin_api::get_shard;
using mnemo::http::admin_api::list_dead_letters;
using mnemo::http::admin_api::list_projections;
using mnemo::http::admin_api::manage_dead_letter;
using mnemo::http::admin_api::manage_projection;

using operation =
    std::variant<open_account, move_money, close_account, get_account,
                 start_transfer, get_transfer, list_transfers, get_balance,
                 get_totals, get_cluster_totals, get_health, get_metrics,
                 list_projections, manage_projection, list_dead_letters,
                 manage_dead_letter, get_shard>;

/// A request the API refuses: HTTP status, error code, message.
using client_error = mnemo::http::api_support::client_error;

using parsed = std::variant<operation, client_error>;

/// Maps a request to its operation. Errors: 404 `not_found` (unknown path),
/// 405 `method_not_allowed`, 400 `malformed_json`, `missing_field`,
/// `wrong_type`, `invalid_amount` (not a positive integer or above
/// `max_amount`), `invalid_id` (empty, too long, or other characters than
/// `[A-Za-z0-9._-]`), `invalid_owner`, `same_account` (transfer to itself),
/// `invalid_query` (a listing without a known status, with a bad limit, or
/// with a malformed percent-escape; query values are percent-decoded, path
/// segments are not).
parsed parse(const std::string& method, const std::string& target,
             const std::string& body, const limits& lim = {});

/// Returns whether `id` is a valid account, transfer or command id.
bool valid_id(const std::string& id, const limits& lim = {});

}  // namespace bank::api
