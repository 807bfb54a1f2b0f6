#include "order_summary.hpp"

#include <limits>
#include <type_traits>
#include <utility>
#include <variant>

#include "entity_id.hpp"
#include "mnemo/actors/variant_codec.hpp"
#include "mnemo/persistence/read_model.hpp"
#include "mnemo/persistence/table_store.hpp"
#include "order.hpp"
#include "payment.hpp"
#include "shipment.hpp"

namespace orders {

namespace pers = mnemo::persistence;

namespace {

using rows_table = pers::table<std::string, order_summary>;
using totals_table_type = pers::table<std::string, int64_t>;

const rows_table& rows() {
  static const rows_table result{summary_table};
  return result;
}

const totals_table_type& totals() {
  static const totals_table_type result{totals_table};
  return result;
}

std::string status_key(const std::string& status, const std::string& id) {
  std::string key = status;
  key += '\0';
  key += id;
  return key;
}

// -- per aggregate updates of a row -------------------------------------------

void update(order_summary& row, const order::event& ev,
            const pers::event_envelope& env) {
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, order_placed>) {
          row.customer = e.customer;
          row.sku = e.sku;
          row.quantity = e.quantity;
          row.amount = e.quantity * e.unit_price;
          row.status = to_string(order_status::placed);
          row.placed_at_ms = env.timestamp_us / 1000;
        } else if constexpr (std::is_same_v<T, order_accepted>) {
          row.status = to_string(order_status::accepted);
        } else if constexpr (std::is_same_v<T, order_completed>) {
          row.status = to_string(order_status::completed);
          if (!e.tracking.empty()) row.tracking = e.tracking;
        } else {
          row.status = to_string(order_status::cancelled);
          row.reason = e.reason;
        }
      },
      ev);
}

void update(order_summary& row, const payment::event& ev,
            const pers::event_envelope&) {
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, payment_requested>)
          row.payment = to_string(payment_status::requested);
        else if constexpr (std::is_same_v<T, payment_captured>)
          row.payment = to_string(payment_status::captured);
        else if constexpr (std::is_same_v<T, payment_declined>)
          row.payment = to_string(payment_status::declined);
        else
          row.payment = to_string(payment_status::refunded);
      },
      ev);
}

void update(order_summary& row, const shipment::event& ev,
            const pers::event_envelope&) {
  // A cancelled shipment keeps its tracking number: it names the parcel
  // that was stopped.
  if (auto* created = std::get_if<shipment_created>(&ev))
    row.tracking = created->tracking;
}

// Decodes `env` as an event of `A` and applies it to the row of its order;
// returns false if `env` is not on a stream of `A`.
template <class A>
bool try_update(const pers::event_registry& types,
                const pers::event_envelope& env, order_summary& row,
                pers::error& err) {
  auto id = entity_id_of<A>(env.stream_id);
  if (!id) return false;
  mnemo::actors::variant_codec<typename A::event> codec{types};
  auto ev = codec.decode(env);
  if (!ev) {
    err = std::move(ev).error();
    return true;
  }
  row.id = *id;
  update(row, *ev, env);
  return true;
}

std::optional<std::string> order_of(const std::string& stream_id) {
  if (auto id = entity_id_of<order>(stream_id)) return id;
  if (auto id = entity_id_of<payment>(stream_id)) return id;
  return entity_id_of<shipment>(stream_id);
}

pers::error add_to_total(pers::write_txn& txn, const std::string& key,
                         int64_t delta) {
  auto cur = totals().get(txn, key);
  if (!cur) return std::move(cur).error();
  auto next = cur->value_or(0) + delta;
  if (next != 0) return totals().put(txn, key, next);
  auto erased = totals().erase(txn, key);
  return erased ? pers::error{} : std::move(erased).error();
}

// Moves the order from status `before` to the row's status in the index
// and the totals, and books the revenue of a completed order.
pers::error update_index_and_totals(pers::write_txn& txn,
                                    const std::string& before,
                                    int64_t amount_before,
                                    const order_summary& row) {
  const std::string completed = to_string(order_status::completed);
  if (before != row.status) {
    if (!before.empty()) {
      auto erased = pers::table_store::erase_in(txn, by_status_table,
                                                status_key(before, row.id));
      if (!erased) return std::move(erased).error();
      if (auto err = add_to_total(txn, before, -1)) return err;
    }
    if (!row.status.empty()) {
      if (auto err = pers::table_store::put_in(
              txn, by_status_table, status_key(row.status, row.id), {}))
        return err;
      if (auto err = add_to_total(txn, row.status, 1)) return err;
    }
  }
  int64_t revenue = (row.status == completed ? row.amount : 0) -
                    (before == completed ? amount_before : 0);
  if (revenue != 0) return add_to_total(txn, revenue_key, revenue);
  return {};
}

}  // namespace

// -- projection ---------------------------------------------------------------

mnemo::actors::projection_spec order_summary_projection(
    const pers::event_registry& types) {
  mnemo::actors::projection_spec spec;
  spec.name = summary_projection_name;
  spec.filter.event_types = {
      "order.placed",     "order.accepted",    "order.completed",
      "order.cancelled",  "payment.requested", "payment.captured",
      "payment.declined", "payment.refunded",  "shipment.created"};
  spec.apply = [types = &types](pers::write_txn& txn,
                                const pers::event_envelope& env) {
    return apply_order_summary(txn, *types, env);
  };
  spec.clear = clear_order_summary;
  return spec;
}

pers::error apply_order_summary(pers::write_txn& txn,
                                const pers::event_registry& types,
                                const pers::event_envelope& env) {
  auto id = order_of(env.stream_id);
  if (!id)
    return pers::error{pers::errc::invalid_argument,
                       "order summary: stream '" + env.stream_id +
                           "' (position " + std::to_string(env.position) +
                           ") is not an order, payment or shipment stream"};
  auto old = rows().get(txn, *id);
  if (!old) return std::move(old).error();
  auto row = old->value_or(order_summary{});
  auto before = row.status;
  auto amount_before = row.amount;
  pers::error err;
  if (!try_update<order>(types, env, row, err) &&
      !try_update<payment>(types, env, row, err))
    try_update<shipment>(types, env, row, err);
  if (err) return err;
  row.updated_position = env.position;
  if (auto put = rows().put(txn, *id, row)) return put;
  return update_index_and_totals(txn, before, amount_before, row);
}

pers::error clear_order_summary(pers::write_txn& txn) {
  if (auto res = rows().clear(txn); !res) return std::move(res).error();
  if (auto res = pers::table_store::clear_in(txn, by_status_table); !res)
    return std::move(res).error();
  if (auto res = totals().clear(txn); !res) return std::move(res).error();
  return {};
}

// -- queries ------------------------------------------------------------------

pers::expected<std::optional<order_summary>> get_order(const pers::journal& j,
                                                       const std::string& id) {
  std::optional<order_summary> result;
  auto err = j.read([&](pers::read_txn& txn) {
    auto row = rows().get(txn, id);
    if (!row) return std::move(row).error();
    result = std::move(*row);
    return pers::error{};
  });
  if (err) return err;
  return result;
}

namespace {

pers::error list_by_status(pers::read_txn& txn, const std::string& status,
                           const std::string& after, size_t limit,
                           std::vector<order_summary>& out) {
  auto prefix = status_key(status, "");
  // The smallest key after "<status>\0<after>" is that key plus a NUL; the
  // keys of the status end before "<status>\x01".
  auto from = after.empty() ? prefix : status_key(status, after) + '\0';
  auto to = status + '\x01';
  std::vector<std::string> ids;
  auto scanned =
      pers::table_store::scan_in(txn, by_status_table, from, to, limit,
                                 [&](std::string_view key, std::string_view) {
                                   ids.emplace_back(key.substr(prefix.size()));
                                   return true;
                                 });
  if (!scanned) return std::move(scanned).error();
  for (auto& id : ids) {
    auto row = rows().get(txn, id);
    if (!row) return std::move(row).error();
    if (!*row)
      return pers::error{
          pers::errc::corrupt_record,
          "index '" + std::string{by_status_table} + "' lists order '" + id +
              "' (status '" + status + "') without a row in '" + summary_table +
              "'; rebuild the projection " + summary_projection_name};
    out.push_back(std::move(**row));
  }
  return {};
}

}  // namespace

pers::expected<std::vector<order_summary>> list_orders(
    const pers::journal& j, const std::optional<std::string>& status,
    const std::string& after, size_t limit) {
  std::vector<order_summary> result;
  if (limit == 0) return result;
  auto err = j.read([&](pers::read_txn& txn) {
    if (status) return list_by_status(txn, *status, after, limit, result);
    std::optional<std::string> from;
    if (!after.empty()) from = after + '\0';
    // A row without a status (its order's "order.placed" not seen yet) is
    // not an order yet: in a replicated cluster a payment's shard log can
    // run ahead of the order's.
    auto scanned = rows().range(
        txn, from, std::nullopt, std::numeric_limits<size_t>::max(),
        [&](const std::string&, const order_summary& r) {
          if (!r.status.empty()) result.push_back(r);
          return result.size() < limit;
        });
    return scanned ? pers::error{} : std::move(scanned).error();
  });
  if (err) return err;
  return result;
}

pers::expected<summary_totals> order_totals(const pers::journal& j) {
  summary_totals result;
  auto err = j.read([&](pers::read_txn& txn) {
    auto scanned = totals().range(
        txn, std::nullopt, std::nullopt, pers::table_store::unlimited,
        [&](const std::string& key, const int64_t& value) {
          if (key == revenue_key)
            result.revenue = value;
          else
            result.by_status[key] = value;
          return true;
        });
    return scanned ? pers::error{} : std::move(scanned).error();
  });
  if (err) return err;
  return result;
}

}  // namespace orders
