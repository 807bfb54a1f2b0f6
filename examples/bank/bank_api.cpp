#include "bank_api.hpp"

#include <vector>

#include "mnemo/http/api_support.hpp"

namespace bank::api {

namespace {

using mnemo::http::api_support::bad_request;
using mnemo::http::api_support::body_reader;
using mnemo::http::api_support::invalid_path_id;
using mnemo::http::api_support::is_blank;
using mnemo::http::api_support::method_not_allowed;
using mnemo::http::api_support::not_found;

template <class F>
parsed with_body(const std::string& body, const limits& lim, F make) {
  return mnemo::http::api_support::with_object<operation>(body, lim.max_id, make);
}

int64_t amount_of(body_reader& r, const limits& lim) {
  return r.positive_integer("amount", lim.max_amount, "invalid_amount");
}

parsed accounts(const std::string& method, const std::vector<std::string>& seg,
                const std::string& body, const limits& lim) {
  if (seg.size() == 1) {
    if (method != "POST") return method_not_allowed(method);
    return with_body(body, lim, [&](body_reader& r) -> operation {
      open_account op;
      op.id = r.id("id");
      op.owner = r.string("owner");
      if (!r.failed() && (op.owner.empty() || op.owner.size() > lim.max_owner))
        r.fail(bad_request("invalid_owner", "the owner must be 1 to " +
                                                std::to_string(lim.max_owner) +
                                                " characters"));
      return op;
    });
  }
  auto& id = seg[1];
  if (!valid_id(id, lim)) return invalid_path_id("account", lim.max_id);
  if (seg.size() == 2) {
    if (method != "GET") return method_not_allowed(method);
    return operation{get_account{id}};
  }
  if (seg.size() != 3) return not_found("/" + seg[0]);
  if (seg[2] == "deposits" || seg[2] == "withdrawals") {
    if (method != "POST") return method_not_allowed(method);
    return with_body(body, lim, [&](body_reader& r) -> operation {
      move_money op;
      op.id = id;
      op.deposit = seg[2] == "deposits";
      op.amount = amount_of(r, lim);
      op.command_id = r.id("command_id", false);
      return op;
    });
  }
  if (seg[2] == "close") {
    if (method != "POST") return method_not_allowed(method);
    if (is_blank(body)) return operation{close_account{id, {}}};
    return with_body(body, lim, [&](body_reader& r) -> operation {
      return close_account{id, r.id("command_id", false)};
    });
  }
  return not_found("/accounts/" + id + "/" + seg[2]);
}

parsed listing(const std::string& target, const limits& lim) {
  static const std::vector<std::string> phases = {
      "running", "compensating", "completed", "compensated", "needs_attention"};
  auto q = mnemo::http::api_support::listing_query_of(target, phases, true,
                                                "transfer", lim.max_id);
  if (auto* err = std::get_if<client_error>(&q)) return std::move(*err);
  auto& l = std::get<mnemo::http::api_support::listing_query>(q);
  return operation{list_transfers{l.status, l.after, l.limit}};
}

parsed transfers(const std::string& method, const std::vector<std::string>& seg,
                 const std::string& body, const std::string& target,
                 const limits& lim) {
  if (seg.size() == 1) {
    if (method == "GET") return listing(target, lim);
    if (method != "POST") return method_not_allowed(method);
    return with_body(body, lim, [&](body_reader& r) -> operation {
      start_transfer op;
      op.id = r.id("id");
      op.from = r.id("from");
      op.to = r.id("to");
      op.amount = amount_of(r, lim);
      if (!r.failed() && op.from == op.to)
        r.fail(bad_request("same_account", "a transfer needs two accounts"));
      return op;
    });
  }
  if (seg.size() != 2) return not_found("/transfers");
  if (!valid_id(seg[1], lim)) return invalid_path_id("transfer", lim.max_id);
  if (method != "GET") return method_not_allowed(method);
  return operation{get_transfer{seg[1]}};
}

}  // namespace

bool valid_id(const std::string& id, const limits& lim) {
  return mnemo::http::api_support::valid_id(id, lim.max_id);
}

parsed parse(const std::string& method, const std::string& target,
             const std::string& body, const limits& lim) {
  if (target.empty() || target[0] != '/') return not_found(target);
  auto seg = mnemo::http::api_support::segments_of(target);
  if (seg.empty()) return not_found(target);
  auto& root = seg[0];
  if (root == "accounts" && seg.size() <= 3)
    return accounts(method, seg, body, lim);
  if (root == "transfers" && seg.size() <= 2)
    return transfers(method, seg, body, target, lim);
  if (root == "admin" && seg.size() <= 6)
    return mnemo::http::admin_api::parse_as<operation>(method, seg, target,
                                                 lim.max_id);
  if (root == "balances" && seg.size() <= 2) {
    if (method != "GET") return method_not_allowed(method);
    if (seg.size() == 1) return operation{get_totals{}};
    if (!valid_id(seg[1], lim)) return invalid_path_id("account", lim.max_id);
    return operation{get_balance{seg[1]}};
  }
  if (root == "cluster" && seg.size() == 2 && seg[1] == "balances") {
    if (method != "GET") return method_not_allowed(method);
    return operation{get_cluster_totals{}};
  }
  if ((root == "health" || root == "metrics") && seg.size() == 1) {
    if (method != "GET") return method_not_allowed(method);
    if (root == "health") return operation{get_health{}};
    return operation{get_metrics{}};
  }
  return not_found(target);
}

}  // namespace bank::api
