#include "orders_api.hpp"

#include <vector>

namespace orders::api {

namespace {

using mnemo::http::api_support::bad_request;
using mnemo::http::api_support::body_reader;
using mnemo::http::api_support::invalid_path_id;
using mnemo::http::api_support::is_blank;
using mnemo::http::api_support::listing_query;
using mnemo::http::api_support::method_not_allowed;
using mnemo::http::api_support::not_found;
using mnemo::http::api_support::valid_id;
using segments = std::vector<std::string>;

template <class F>
parsed with_body(const std::string& body, const limits& lim, F make) {
  return mnemo::http::api_support::with_object<operation>(body, lim.max_id, make);
}

// The listing query of `target`, or the error to answer.
std::variant<listing_query, client_error> listing_of(
    const std::string& target, const std::vector<std::string>& statuses,
    bool status_required, const std::string& what, const limits& lim) {
  return mnemo::http::api_support::listing_query_of(target, statuses, status_required,
                                              what, lim.max_id);
}

parsed list_of_orders(const std::string& target, const limits& lim) {
  static const std::vector<std::string> statuses = {"placed", "accepted",
                                                    "completed", "cancelled"};
  auto q = listing_of(target, statuses, false, "order", lim);
  if (auto* err = std::get_if<client_error>(&q)) return std::move(*err);
  auto& l = std::get<listing_query>(q);
  return operation{list_orders{l.status, l.after, l.limit}};
}

parsed place(const std::string& body, const limits& lim) {
  return with_body(body, lim, [&](body_reader& r) -> operation {
    place_order op;
    op.id = r.id("id");
    op.customer = r.string("customer");
    if (!r.failed() &&
        (op.customer.empty() || op.customer.size() > lim.max_customer))
      r.fail(bad_request("invalid_customer",
                         "the customer must be 1 to " +
                             std::to_string(lim.max_customer) + " bytes"));
    op.sku = r.id("sku");
    op.quantity =
        r.positive_integer("quantity", lim.max_quantity, "invalid_quantity");
    op.unit_price =
        r.positive_integer("unit_price", lim.max_unit_price, "invalid_price");
    return op;
  });
}

parsed orders(const std::string& method, const segments& seg,
              const std::string& body, const std::string& target,
              const limits& lim) {
  if (seg.size() == 1) {
    if (method == "GET") return list_of_orders(target, lim);
    if (method != "POST") return method_not_allowed(method);
    return place(body, lim);
  }
  auto& id = seg[1];
  if (!valid_id(id, lim.max_id)) return invalid_path_id("order", lim.max_id);
  if (seg.size() == 2) {
    if (method != "GET") return method_not_allowed(method);
    return operation{get_order{id}};
  }
  if (seg[2] != "cancel") return not_found(target);
  if (method != "POST") return method_not_allowed(method);
  if (is_blank(body)) return operation{cancel_order{id, {}}};
  return with_body(body, lim, [&](body_reader& r) -> operation {
    return cancel_order{id, r.id("command_id", false)};
  });
}

parsed inventory(const std::string& method, const segments& seg,
                 const std::string& body, const std::string& target,
                 const limits& lim) {
  if (seg.size() == 1) return not_found(target);
  auto& sku = seg[1];
  if (!valid_id(sku, lim.max_id)) return invalid_path_id("SKU", lim.max_id);
  if (seg.size() == 2) {
    if (method != "GET") return method_not_allowed(method);
    return operation{get_stock{sku}};
  }
  if (seg[2] != "stock") return not_found(target);
  if (method != "POST") return method_not_allowed(method);
  return with_body(body, lim, [&](body_reader& r) -> operation {
    add_stock op;
    op.sku = sku;
    op.quantity =
        r.positive_integer("quantity", lim.max_quantity, "invalid_quantity");
    op.command_id = r.id("command_id", false);
    return op;
  });
}

parsed fulfilments(const std::string& method, const segments& seg,
                   const std::string& target, const limits& lim) {
  static const std::vector<std::string> phases = {
      "running", "compensating", "completed", "compensated", "needs_attention"};
  if (seg.size() == 1) {
    if (method != "GET") return method_not_allowed(method);
    auto q = listing_of(target, phases, true, "fulfilment", lim);
    if (auto* err = std::get_if<client_error>(&q)) return std::move(*err);
    auto& l = std::get<listing_query>(q);
    return operation{list_fulfilments{l.status, l.after, l.limit}};
  }
  if (!valid_id(seg[1], lim.max_id))
    return invalid_path_id("fulfilment", lim.max_id);
  if (method != "GET") return method_not_allowed(method);
  return operation{get_fulfilment{seg[1]}};
}

}  // namespace

parsed parse(const std::string& method, const std::string& target,
             const std::string& body, const limits& lim) {
  if (target.empty() || target[0] != '/') return not_found(target);
  auto seg = mnemo::http::api_support::segments_of(target);
  if (seg.empty()) return not_found(target);
  auto& root = seg[0];
  if (root == "orders" && seg.size() <= 3)
    return orders(method, seg, body, target, lim);
  if (root == "inventory" && seg.size() <= 3)
    return inventory(method, seg, body, target, lim);
  if (root == "fulfilments" && seg.size() <= 2)
    return fulfilments(method, seg, target, lim);
  if (root == "admin" && seg.size() <= 6)
    return mnemo::http::admin_api::parse_as<operation>(method, seg, target,
                                                 lim.max_id);
  if ((root == "totals" || root == "health" || root == "metrics") &&
      seg.size() == 1) {
    if (method != "GET") return method_not_allowed(method);
    if (root == "totals") return operation{get_totals{}};
    if (root == "health") return operation{get_health{}};
    return operation{get_metrics{}};
  }
  return not_found(target);
}

}  // namespace orders::api
