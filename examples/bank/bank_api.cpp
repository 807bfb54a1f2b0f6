#include "bank_api.hpp"

#include <limits>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

namespace bank::api {

namespace {

using json = nlohmann::json;

client_error bad(const std::string& code, const std::string& message) {
  return {400, code, message};
}

std::vector<std::string> segments_of(const std::string& target) {
  auto path = target.substr(0, target.find('?'));
  if (path.size() > 1 && path.back() == '/') path.pop_back();
  std::vector<std::string> result;
  size_t start = 1;  // skip the leading '/'
  while (start <= path.size()) {
    auto end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    result.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  return result;
}

// The JSON object of a body, or the error to answer.
std::variant<json, client_error> object_of(const std::string& body) {
  auto doc = json::parse(body, nullptr, false);
  if (doc.is_discarded())
    return bad("malformed_json", "the body is not valid JSON");
  if (!doc.is_object())
    return bad("malformed_json", "the body must be a JSON object");
  return doc;
}

struct reader {
  const json& obj;
  const limits& lim;
  std::optional<client_error> error;

  const json* field(const char* name, bool required) {
    auto i = obj.find(name);
    if (i == obj.end() || i->is_null()) {
      if (required && !error)
        error = bad("missing_field",
                    std::string{"field '"} + name + "' is required");
      return nullptr;
    }
    return &*i;
  }

  std::string string(const char* name, bool required = true) {
    auto* f = field(name, required);
    if (f == nullptr) return {};
    if (!f->is_string()) {
      if (!error)
        error = bad("wrong_type",
                    std::string{"field '"} + name + "' must be a string");
      return {};
    }
    return f->get<std::string>();
  }

  std::string id(const char* name, bool required = true) {
    auto value = string(name, required);
    if (error || (!required && value.empty())) return value;
    if (!valid_id(value, lim))
      error =
          bad("invalid_id", std::string{"field '"} + name + "' must be 1 to " +
                                std::to_string(lim.max_id) +
                                " characters of [A-Za-z0-9._-]");
    return value;
  }

  int64_t amount(const char* name) {
    auto* f = field(name, true);
    if (f == nullptr) return 0;
    if (!f->is_number_integer()) {
      if (!error)
        error = bad(f->is_number() ? "invalid_amount" : "wrong_type",
                    std::string{"field '"} + name +
                        "' must be a positive integer (minor units)");
      return 0;
    }
    if (f->is_number_unsigned() &&
        f->get<uint64_t>() >
            static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      error = bad("invalid_amount", "the amount is too large");
      return 0;
    }
    auto value = f->get<int64_t>();
    if (value <= 0 || value > lim.max_amount) {
      error = bad("invalid_amount", "amounts are integers from 1 to " +
                                        std::to_string(lim.max_amount));
      return 0;
    }
    return value;
  }
};

client_error not_found(const std::string& target) {
  return {404, "not_found", "no endpoint " + target.substr(0, 200)};
}

client_error not_allowed(const std::string& method) {
  return {405, "method_not_allowed",
          "method " + method.substr(0, 20) + " is not allowed here"};
}

client_error bad_path_id(const std::string& what, const limits& lim) {
  return bad("invalid_id", "the " + what + " id must be 1 to " +
                               std::to_string(lim.max_id) +
                               " characters of [A-Za-z0-9._-]");
}

template <class F>
parsed with_body(const std::string& body, const limits& lim, F make) {
  auto obj = object_of(body);
  if (auto* err = std::get_if<client_error>(&obj)) return *err;
  reader r{std::get<json>(obj), lim, std::nullopt};
  operation op = make(r);
  if (r.error) return *r.error;
  return op;
}

parsed accounts(const std::string& method, const std::vector<std::string>& seg,
                const std::string& body, const limits& lim) {
  if (seg.size() == 1) {
    if (method != "POST") return not_allowed(method);
    return with_body(body, lim, [&](reader& r) -> operation {
      open_account op;
      op.id = r.id("id");
      op.owner = r.string("owner");
      if (!r.error && (op.owner.empty() || op.owner.size() > lim.max_owner))
        r.error = bad("invalid_owner", "the owner must be 1 to " +
                                           std::to_string(lim.max_owner) +
                                           " characters");
      return op;
    });
  }
  auto& id = seg[1];
  if (!valid_id(id, lim)) return bad_path_id("account", lim);
  if (seg.size() == 2) {
    if (method != "GET") return not_allowed(method);
    return operation{get_account{id}};
  }
  if (seg.size() != 3) return not_found("/" + seg[0]);
  if (seg[2] == "deposits" || seg[2] == "withdrawals") {
    if (method != "POST") return not_allowed(method);
    return with_body(body, lim, [&](reader& r) -> operation {
      move_money op;
      op.id = id;
      op.deposit = seg[2] == "deposits";
      op.amount = r.amount("amount");
      op.command_id = r.id("command_id", false);
      return op;
    });
  }
  if (seg[2] == "close") {
    if (method != "POST") return not_allowed(method);
    if (body.find_first_not_of(" \t\r\n") == std::string::npos)
      return operation{close_account{id, {}}};
    return with_body(body, lim, [&](reader& r) -> operation {
      return close_account{id, r.id("command_id", false)};
    });
  }
  return not_found("/accounts/" + id + "/" + seg[2]);
}

// Parses "a=1&b=2" (no percent-decoding: the values the API takes need
// none; a '%' makes them invalid).
std::vector<std::pair<std::string, std::string>> query_of(
    const std::string& target) {
  std::vector<std::pair<std::string, std::string>> result;
  auto q = target.find('?');
  if (q == std::string::npos) return result;
  auto rest = target.substr(q + 1);
  size_t start = 0;
  while (start <= rest.size()) {
    auto end = rest.find('&', start);
    if (end == std::string::npos) end = rest.size();
    auto part = rest.substr(start, end - start);
    auto eq = part.find('=');
    if (!part.empty())
      result.emplace_back(part.substr(0, eq),
                          eq == std::string::npos ? "" : part.substr(eq + 1));
    start = end + 1;
  }
  return result;
}

parsed listing(const std::string& target, const limits& lim) {
  list_transfers op;
  for (auto& [key, value] : query_of(target)) {
    if (key == "status") {
      op.phase = value;
    } else if (key == "after") {
      if (!valid_id(value, lim)) return bad_path_id("transfer", lim);
      op.after = value;
    } else if (key == "limit") {
      if (value.empty() || value.size() > 4 ||
          value.find_first_not_of("0123456789") != std::string::npos ||
          std::stoul(value) < 1 || std::stoul(value) > 1000)
        return bad("invalid_query", "limit must be 1 to 1000");
      op.limit = std::stoul(value);
    } else {
      return bad("invalid_query",
                 "unknown query parameter '" + key.substr(0, 40) + "'");
    }
  }
  static const char* phases[] = {"running", "compensating", "completed",
                                 "compensated", "needs_attention"};
  for (auto p : phases)
    if (op.phase == p) return operation{op};
  return bad("invalid_query",
             "status must be running, compensating, completed, compensated "
             "or needs_attention");
}

parsed transfers(const std::string& method, const std::vector<std::string>& seg,
                 const std::string& body, const std::string& target,
                 const limits& lim) {
  if (seg.size() == 1) {
    if (method == "GET") return listing(target, lim);
    if (method != "POST") return not_allowed(method);
    return with_body(body, lim, [&](reader& r) -> operation {
      start_transfer op;
      op.id = r.id("id");
      op.from = r.id("from");
      op.to = r.id("to");
      op.amount = r.amount("amount");
      if (!r.error && op.from == op.to)
        r.error = bad("same_account", "a transfer needs two accounts");
      return op;
    });
  }
  if (seg.size() != 2) return not_found("/transfers");
  if (!valid_id(seg[1], lim)) return bad_path_id("transfer", lim);
  if (method != "GET") return not_allowed(method);
  return operation{get_transfer{seg[1]}};
}

std::optional<uint64_t> number_of(const std::string& text, uint64_t max) {
  if (text.empty() || text.size() > 19 ||
      text.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  auto value = std::stoull(text);
  if (value > max) return std::nullopt;
  return value;
}

parsed admin(const std::string& method, const std::vector<std::string>& seg,
             const std::string& target, const limits& lim) {
  // seg: admin, projections[, name[, action | dead-letters[, pos, action]]]
  if (seg.size() < 2 || seg[1] != "projections") return not_found(target);
  if (seg.size() == 2) {
    if (method != "GET") return not_allowed(method);
    return operation{list_projections{}};
  }
  auto& name = seg[2];
  if (!valid_id(name, lim)) return bad_path_id("projection", lim);
  if (seg.size() == 4 && seg[3] != "dead-letters") {
    if (seg[3] != "pause" && seg[3] != "resume" && seg[3] != "rebuild")
      return not_found(target);
    if (method != "POST") return not_allowed(method);
    return operation{manage_projection{name, seg[3]}};
  }
  if (seg.size() == 4) {
    if (method != "GET") return not_allowed(method);
    list_dead_letters op{name, 0, 100};
    for (auto& [key, value] : query_of(target)) {
      std::optional<uint64_t> n;
      if (key == "from")
        n = number_of(value, UINT64_MAX / 2);
      else if (key == "limit")
        n = number_of(value, 1000);
      if (!n || (key == "limit" && *n == 0))
        return bad("invalid_query", "from is a position, limit 1 to 1000");
      (key == "from" ? op.from : op.limit) = *n;
    }
    return operation{op};
  }
  if (seg.size() == 6 && seg[3] == "dead-letters" &&
      (seg[5] == "retry" || seg[5] == "drop")) {
    auto position = number_of(seg[4], UINT64_MAX / 2);
    if (!position) return bad("invalid_query", "not a position: " + seg[4]);
    if (method != "POST") return not_allowed(method);
    return operation{manage_dead_letter{name, *position, seg[5]}};
  }
  return not_found(target);
}

}  // namespace

bool valid_id(const std::string& id, const limits& lim) {
  if (id.empty() || id.size() > lim.max_id) return false;
  for (auto c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

parsed parse(const std::string& method, const std::string& target,
             const std::string& body, const limits& lim) {
  if (target.empty() || target[0] != '/') return not_found(target);
  auto seg = segments_of(target);
  if (seg.empty()) return not_found(target);
  auto& root = seg[0];
  if (root == "accounts" && seg.size() <= 3)
    return accounts(method, seg, body, lim);
  if (root == "transfers" && seg.size() <= 2)
    return transfers(method, seg, body, target, lim);
  if (root == "admin" && seg.size() <= 6)
    return admin(method, seg, target, lim);
  if (root == "balances" && seg.size() <= 2) {
    if (method != "GET") return not_allowed(method);
    if (seg.size() == 1) return operation{get_totals{}};
    if (!valid_id(seg[1], lim)) return bad_path_id("account", lim);
    return operation{get_balance{seg[1]}};
  }
  if ((root == "health" || root == "metrics") && seg.size() == 1) {
    if (method != "GET") return not_allowed(method);
    if (root == "health") return operation{get_health{}};
    return operation{get_metrics{}};
  }
  return not_found(target);
}

}  // namespace bank::api
