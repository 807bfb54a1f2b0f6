#pragma once

// The orders node's HTTP API as data: `parse` turns a request (method,
// target, body) into one typed operation or a client error, without any
// actor or I/O, so that it can be tested and fuzzed on its own.
//
// Bodies are JSON objects; a field that is null counts as missing and
// unknown fields are ignored. Ids (order, SKU, fulfilment, command,
// projection) are 1 to `limits::max_id` characters of [A-Za-z0-9._-]. Query
// values are percent-decoded; path segments are not, so an escaped id is
// an invalid one. One trailing '/' is ignored.

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>

#include "mnemo/http/admin_api.hpp"
#include "mnemo/http/api_support.hpp"

namespace orders::api {

/// Limits the API enforces on input.
struct limits {
  /// Largest quantity of an order or a stock delivery. Default: 10^6.
  int64_t max_quantity = 1'000'000;
  /// Largest unit price in minor units. Default: 10^9.
  int64_t max_unit_price = 1'000'000'000;
  /// Longest order, SKU, fulfilment, command or projection id. Default: 64.
  size_t max_id = 64;
  /// Longest customer name. Default: 128.
  size_t max_customer = 128;
};

// -- operations ---------------------------------------------------------------

/// POST /orders {"id","customer","sku","quantity","unit_price"}: places
/// order `id` for `quantity` units of `sku` at `unit_price` minor units.
struct place_order {
  std::string id;
  std::string customer;
  std::string sku;
  int64_t quantity = 0;
  int64_t unit_price = 0;
};
/// GET /orders/{id}
struct get_order {
  std::string id;
};
/// GET /orders[?status=S][&after=ID][&limit=N]: orders in id order, those
/// after `after`, at most `limit` (1 to 1000, default 100); only those in
/// status `status` (placed, accepted, completed, cancelled), or all if
/// `status` is "" (absent).
struct list_orders {
  std::string status;
  std::string after;
  size_t limit = 100;
};
/// POST /orders/{id}/cancel [{"command_id"?}] (body optional): cancels an
/// order; `command_id` ("" if absent) makes a retry idempotent.
struct cancel_order {
  std::string id;
  std::string command_id;
};
/// POST /inventory/{sku}/stock {"quantity","command_id"?}: adds `quantity`
/// units of `sku` to the stock; `command_id` is "" if absent.
struct add_stock {
  std::string sku;
  int64_t quantity = 0;
  std::string command_id;
};
/// GET /inventory/{sku}
struct get_stock {
  std::string sku;
};
/// GET /totals: order counts by status and revenue.
struct get_totals {};
/// GET /fulfilments/{id}: the fulfilment saga of one order.
struct get_fulfilment {
  std::string id;
};
/// GET /fulfilments?status=PHASE[&after=ID][&limit=N]: fulfilments in one
/// phase (running, compensating, completed, compensated, needs_attention;
/// required), from the saga index, in id order, after `after`, at most
/// `limit` (1 to 1000, default 100).
struct list_fulfilments {
  std::string phase;
  std::string after;
  size_t limit = 100;
};
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
    std::variant<place_order, get_order, list_orders, cancel_order, add_stock,
                 get_stock, get_totals, get_fulfilment, list_fulfilments,
                 get_health, get_metrics, list_projections, manage_projection,
                 list_dead_letters, manage_dead_letter, get_shard>;

/// A request the API refuses: HTTP status, error code, message.
using client_error = mnemo::http::api_support::client_error;

using parsed = std::variant<operation, client_error>;

/// Maps a request to its operation. Errors:
/// * 404 `not_found`: unknown path (including /orders/{id}/x for any x but
///   cancel, /inventory without a SKU, an unknown admin path);
/// * 405 `method_not_allowed`: a known path with another method;
/// * 400 `malformed_json`: a body that is not a JSON object (the body of a
///   cancel may be empty);
/// * 400 `missing_field`: a required field absent or null;
/// * 400 `wrong_type`: a field of another JSON type (e.g. "5" for 5);
/// * 400 `invalid_id`: an order, SKU, fulfilment, command or projection id
///   (in the path, the body or `after`) that is empty, too long or has other
///   characters than [A-Za-z0-9._-];
/// * 400 `invalid_customer`: a customer that is empty or longer than
///   `max_customer` bytes;
/// * 400 `invalid_quantity`: a quantity that is not an integer from 1 to
///   `max_quantity` (e.g. 0, -1, 1.5);
/// * 400 `invalid_price`: a unit price that is not an integer from 1 to
///   `max_unit_price`;
/// * 400 `invalid_query`: a listing with an unknown parameter, an unknown
///   or empty status, no status (fulfilments only), a limit that is not 1
///   to 1000, a malformed percent-escape; a bad dead-letter position.
/// Field errors are reported for the first bad field in the order the
/// operation lists them. Thread-safe: a pure function.
parsed parse(const std::string& method, const std::string& target,
             const std::string& body, const limits& lim = {});

}  // namespace orders::api
