#pragma once

// The order-summary read model: one row per order with its status, payment
// and tracking, an index by status and running totals, kept by an
// exactly-once projection over the order, payment and shipment events.
// Queries read only this model, never the event streams.

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <msgpack.hpp>

#include "mnemo/actors/projection.hpp"
#include "mnemo/persistence/error.hpp"
#include "mnemo/persistence/event_envelope.hpp"
#include "mnemo/persistence/event_registry.hpp"
#include "mnemo/persistence/journal.hpp"
#include "mnemo/persistence/transaction.hpp"

namespace orders {

/// Name of the projection (its offset and dead letters are stored under
/// it).
constexpr const char* summary_projection_name = "orders.summary";

/// Table of `order_summary` rows (msgpack maps) keyed by order id.
constexpr const char* summary_table = "orders.summary";

/// Index table: key status + '\0' + order id, empty value. Orders whose
/// status is still unknown (only payment or shipment events seen) are not
/// in it.
constexpr const char* by_status_table = "orders.by_status";

/// Totals table: order status -> number of orders (msgpack integer; absent
/// when 0), and `revenue_key` -> sum of the amounts of completed orders.
constexpr const char* totals_table = "orders.totals";

/// The key of the revenue in `totals_table`.
constexpr const char* revenue_key = "revenue";

/// One row of the read model.
struct order_summary {
  std::string id;
  std::string customer;
  std::string sku;
  int64_t quantity = 0;
  /// quantity * unit price, minor units.
  int64_t amount = 0;
  /// Order status ("placed", "accepted", "completed", "cancelled"); empty
  /// until the "order.placed" event was seen.
  std::string status;
  /// Payment status ("requested", "captured", "declined", "refunded");
  /// "none" before any payment event.
  std::string payment = "none";
  /// From "shipment.created" or "order.completed", whichever came last.
  std::string tracking;
  /// Why the order was cancelled.
  std::string reason;
  /// Commit time of "order.placed", milliseconds since the Unix epoch.
  int64_t placed_at_ms = 0;
  /// Position of the last event that changed the row, in its log: the
  /// node's journal, or in a replicated cluster that event's shard log
  /// (then not comparable between rows, nor the same on every member).
  uint64_t updated_position = 0;
  MSGPACK_DEFINE_MAP(id, customer, sku, quantity, amount, status, payment,
                     tracking, reason, placed_at_ms, updated_position)
};

/// The totals of the read model.
struct summary_totals {
  /// Number of orders per status; statuses without orders are absent.
  std::map<std::string, int64_t> by_status;
  /// Sum of the amounts of completed orders.
  int64_t revenue = 0;
};

/// Returns the exactly-once projection "orders.summary" over the events
/// "order.*", "payment.*" and "shipment.created". `types` must hold the
/// event types of `order`, `payment` and `shipment` and outlive the
/// projection. Its `clear` is `clear_order_summary` (for rebuilds).
mnemo::actors::projection_spec order_summary_projection(
    const mnemo::persistence::event_registry& types);

/// Applies `env` to the read model inside `txn` (the projection's handler;
/// runs on the journal's writer thread). Deterministic: replaying the same
/// events gives the same tables. Errors: `invalid_argument` (a stream that
/// is not "order-", "payment-" or "shipment-<id>"), `unknown_event_type`
/// and `decode_failed` (from the event registry), `decode_failed` for a
/// damaged row, `storage_full`, `storage_error`.
mnemo::persistence::error apply_order_summary(
    mnemo::persistence::write_txn& txn,
    const mnemo::persistence::event_registry& types,
    const mnemo::persistence::event_envelope& env);

/// Deletes every row of the three tables inside `txn`. Errors:
/// `storage_full`, `storage_error`.
mnemo::persistence::error clear_order_summary(
    mnemo::persistence::write_txn& txn);

/// Returns the row of order `id`, if the projection has seen it. Any
/// thread. Errors: `decode_failed` (damaged row: rebuild), `storage_error`.
mnemo::persistence::expected<std::optional<order_summary>> get_order(
    const mnemo::persistence::journal& j, const std::string& id);

/// Returns at most `limit` rows with order id > `after` ("" for the
/// first page) in id order: all orders, or those with status `status`.
/// Rows of orders whose placement the model has not seen yet (only their
/// payment or shipment, possible in a replicated cluster) are left out.
/// Any thread. Errors: as for `get_order`, plus `corrupt_record` for an
/// index entry without row.
mnemo::persistence::expected<std::vector<order_summary>> list_orders(
    const mnemo::persistence::journal& j,
    const std::optional<std::string>& status, const std::string& after,
    size_t limit);

/// Returns the number of orders per status and the revenue. Any thread.
/// Errors: `decode_failed` (damaged row: rebuild), `storage_error`.
mnemo::persistence::expected<summary_totals> order_totals(
    const mnemo::persistence::journal& j);

}  // namespace orders
