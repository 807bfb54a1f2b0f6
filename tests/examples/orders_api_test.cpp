// The orders node's request mapping on its own: every endpoint, every
// client error, the limits, percent-decoding in queries, and a fuzz run over
// mutated requests.

#include <boost/test/unit_test.hpp>

#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "../../examples/orders/orders_api.hpp"

namespace {

using namespace orders::api;

template <class T>
const T* op_of(const parsed& p) {
  auto* op = std::get_if<operation>(&p);
  return op ? std::get_if<T>(op) : nullptr;
}

std::string code_of(const parsed& p) {
  auto* err = std::get_if<client_error>(&p);
  return err ? err->code : "ok";
}

unsigned status_of(const parsed& p) {
  auto* err = std::get_if<client_error>(&p);
  return err ? err->status : 0;
}

// POST /orders with `fields` spliced into an otherwise valid body.
parsed place(const std::string& fields, const limits& lim = {}) {
  return parse("POST", "/orders", "{" + fields + "}", lim);
}

const std::string valid_order =
    R"("id":"o-1","customer":"Ada L.","sku":"sku.7","quantity":3,)"
    R"("unit_price":250)";

}  // namespace

BOOST_AUTO_TEST_SUITE(orders_api)

BOOST_AUTO_TEST_CASE(order_endpoints_map_to_their_operations) {
  auto placed = place(valid_order);
  BOOST_REQUIRE(op_of<place_order>(placed));
  auto& po = *op_of<place_order>(placed);
  BOOST_CHECK_EQUAL(po.id, "o-1");
  BOOST_CHECK_EQUAL(po.customer, "Ada L.");
  BOOST_CHECK_EQUAL(po.sku, "sku.7");
  BOOST_CHECK_EQUAL(po.quantity, 3);
  BOOST_CHECK_EQUAL(po.unit_price, 250);
  auto got = parse("GET", "/orders/o-1", "");
  BOOST_REQUIRE(op_of<get_order>(got));
  BOOST_CHECK_EQUAL(op_of<get_order>(got)->id, "o-1");
  BOOST_CHECK(op_of<get_order>(parse("GET", "/orders/o-1/?x=1", "")));
  auto cancel = parse("POST", "/orders/o-1/cancel", "");
  BOOST_REQUIRE(op_of<cancel_order>(cancel));
  BOOST_CHECK_EQUAL(op_of<cancel_order>(cancel)->id, "o-1");
  BOOST_CHECK(op_of<cancel_order>(cancel)->command_id.empty());
  BOOST_CHECK(op_of<cancel_order>(parse("POST", "/orders/o-1/cancel", " \n")));
  BOOST_CHECK(op_of<cancel_order>(parse("POST", "/orders/o-1/cancel", "{}")));
  auto with_id = parse("POST", "/orders/o-1/cancel", R"({"command_id":"c-9"})");
  BOOST_REQUIRE(op_of<cancel_order>(with_id));
  BOOST_CHECK_EQUAL(op_of<cancel_order>(with_id)->command_id, "c-9");
}

BOOST_AUTO_TEST_CASE(order_listings_take_an_optional_status) {
  auto all = parse("GET", "/orders", "");
  BOOST_REQUIRE(op_of<list_orders>(all));
  BOOST_CHECK(op_of<list_orders>(all)->status.empty());
  BOOST_CHECK(op_of<list_orders>(all)->after.empty());
  BOOST_CHECK_EQUAL(op_of<list_orders>(all)->limit, 100u);
  for (auto status : {"placed", "accepted", "completed", "cancelled"}) {
    auto l = parse("GET", std::string{"/orders?status="} + status, "");
    BOOST_REQUIRE(op_of<list_orders>(l));
    BOOST_CHECK_EQUAL(op_of<list_orders>(l)->status, status);
  }
  auto page = parse("GET", "/orders?status=accepted&after=o-7&limit=5", "");
  BOOST_REQUIRE(op_of<list_orders>(page));
  BOOST_CHECK_EQUAL(op_of<list_orders>(page)->after, "o-7");
  BOOST_CHECK_EQUAL(op_of<list_orders>(page)->limit, 5u);
  auto limits_only = parse("GET", "/orders?limit=1000", "");
  BOOST_REQUIRE(op_of<list_orders>(limits_only));
  BOOST_CHECK(op_of<list_orders>(limits_only)->status.empty());
  BOOST_CHECK_EQUAL(op_of<list_orders>(limits_only)->limit, 1000u);
  auto code = [](const std::string& q) {
    return code_of(parse("GET", "/orders?" + q, ""));
  };
  BOOST_CHECK_EQUAL(code("status=lost"), "invalid_query");
  BOOST_CHECK_EQUAL(code("status="), "invalid_query");
  BOOST_CHECK_EQUAL(code("status"), "invalid_query");
  BOOST_CHECK_EQUAL(code("status=PLACED"), "invalid_query");
  BOOST_CHECK_EQUAL(code("limit=0"), "invalid_query");
  BOOST_CHECK_EQUAL(code("limit=1001"), "invalid_query");
  BOOST_CHECK_EQUAL(code("limit=-1"), "invalid_query");
  BOOST_CHECK_EQUAL(code("limit=ten"), "invalid_query");
  BOOST_CHECK_EQUAL(code("limit="), "invalid_query");
  BOOST_CHECK_EQUAL(code("limit=99999999999999999999"), "invalid_query");
  BOOST_CHECK_EQUAL(code("sort=id"), "invalid_query");
  BOOST_CHECK_EQUAL(code("after=a%20b"), "invalid_id");
  BOOST_CHECK_EQUAL(code("after="), "invalid_id");
  BOOST_CHECK_EQUAL(code("after=" + std::string(65, 'a')), "invalid_id");
  BOOST_CHECK_EQUAL(code("after=" + std::string(64, 'a')), "ok");
}

BOOST_AUTO_TEST_CASE(queries_are_percent_decoded) {
  auto l =
      parse("GET", "/orders?st%61tus=c%61ncelled&after=o%2D7&limit=%31", "");
  BOOST_REQUIRE(op_of<list_orders>(l));
  BOOST_CHECK_EQUAL(op_of<list_orders>(l)->status, "cancelled");
  BOOST_CHECK_EQUAL(op_of<list_orders>(l)->after, "o-7");
  BOOST_CHECK_EQUAL(op_of<list_orders>(l)->limit, 1u);
  auto f = parse("GET", "/fulfilments?status=needs%5Fattention", "");
  BOOST_REQUIRE(op_of<list_fulfilments>(f));
  BOOST_CHECK_EQUAL(op_of<list_fulfilments>(f)->phase, "needs_attention");
  // Lower- and upper-case hex digits both decode.
  auto hex = parse("GET", "/orders?after=a%2eb%2Ec", "");
  BOOST_REQUIRE(op_of<list_orders>(hex));
  BOOST_CHECK_EQUAL(op_of<list_orders>(hex)->after, "a.b.c");
  auto code = [](const std::string& q) {
    return code_of(parse("GET", "/orders?" + q, ""));
  };
  // A decoded character that ids refuse stays refused.
  BOOST_CHECK_EQUAL(code("after=o%2F7"), "invalid_id");
  BOOST_CHECK_EQUAL(code("after=o%007"), "invalid_id");
  // '+' is not a space, and not an id character either.
  BOOST_CHECK_EQUAL(code("after=o+7"), "invalid_id");
  BOOST_CHECK_EQUAL(code("status=placed%"), "invalid_query");
  BOOST_CHECK_EQUAL(code("status=placed%4"), "invalid_query");
  BOOST_CHECK_EQUAL(code("status=plac%zzed"), "invalid_query");
  BOOST_CHECK_EQUAL(code("%=1"), "invalid_query");
  // Paths are not decoded: an escaped id is an invalid id.
  BOOST_CHECK_EQUAL(code_of(parse("GET", "/orders/o%2D1", "")), "invalid_id");
  BOOST_CHECK_EQUAL(
      code_of(parse("GET", "/admin/projections/p/dead-letters?from=%37", "")),
      "ok");
}

BOOST_AUTO_TEST_CASE(inventory_totals_and_fulfilment_endpoints) {
  auto stock = parse("POST", "/inventory/sku.7/stock",
                     R"({"quantity":40,"command_id":"d-1"})");
  BOOST_REQUIRE(op_of<add_stock>(stock));
  BOOST_CHECK_EQUAL(op_of<add_stock>(stock)->sku, "sku.7");
  BOOST_CHECK_EQUAL(op_of<add_stock>(stock)->quantity, 40);
  BOOST_CHECK_EQUAL(op_of<add_stock>(stock)->command_id, "d-1");
  auto no_cmd = parse("POST", "/inventory/sku.7/stock", R"({"quantity":1})");
  BOOST_REQUIRE(op_of<add_stock>(no_cmd));
  BOOST_CHECK(op_of<add_stock>(no_cmd)->command_id.empty());
  auto get = parse("GET", "/inventory/sku.7", "");
  BOOST_REQUIRE(op_of<get_stock>(get));
  BOOST_CHECK_EQUAL(op_of<get_stock>(get)->sku, "sku.7");
  BOOST_CHECK(op_of<get_totals>(parse("GET", "/totals", "")));
  BOOST_CHECK(op_of<get_totals>(parse("GET", "/totals/", "")));
  auto fid = parse("GET", "/fulfilments/o-1", "");
  BOOST_REQUIRE(op_of<get_fulfilment>(fid));
  BOOST_CHECK_EQUAL(op_of<get_fulfilment>(fid)->id, "o-1");
  for (auto phase : {"running", "compensating", "completed", "compensated",
                     "needs_attention"}) {
    auto l = parse("GET", std::string{"/fulfilments?status="} + phase, "");
    BOOST_REQUIRE(op_of<list_fulfilments>(l));
    BOOST_CHECK_EQUAL(op_of<list_fulfilments>(l)->phase, phase);
    BOOST_CHECK_EQUAL(op_of<list_fulfilments>(l)->limit, 100u);
  }
  auto page =
      parse("GET", "/fulfilments?status=running&after=o-3&limit=20", "");
  BOOST_REQUIRE(op_of<list_fulfilments>(page));
  BOOST_CHECK_EQUAL(op_of<list_fulfilments>(page)->after, "o-3");
  BOOST_CHECK_EQUAL(op_of<list_fulfilments>(page)->limit, 20u);
  // The phase is required, unlike an order's status.
  BOOST_CHECK_EQUAL(code_of(parse("GET", "/fulfilments", "")), "invalid_query");
  BOOST_CHECK_EQUAL(code_of(parse("GET", "/fulfilments?limit=5", "")),
                    "invalid_query");
  BOOST_CHECK_EQUAL(code_of(parse("GET", "/fulfilments?status=placed", "")),
                    "invalid_query");
  BOOST_CHECK_EQUAL(
      code_of(parse("GET", "/fulfilments?status=running&limit=0", "")),
      "invalid_query");
  BOOST_CHECK_EQUAL(
      code_of(parse("GET", "/fulfilments?status=running&after=x/y", "")),
      "invalid_id");
}

BOOST_AUTO_TEST_CASE(health_metrics_and_admin_endpoints) {
  BOOST_CHECK(op_of<get_health>(parse("GET", "/health", "")));
  BOOST_CHECK(op_of<get_metrics>(parse("GET", "/metrics", "")));
  BOOST_CHECK(op_of<list_projections>(parse("GET", "/admin/projections", "")));
  for (auto action : {"pause", "resume", "rebuild"}) {
    auto m = parse(
        "POST", std::string{"/admin/projections/orders.summary/"} + action, "");
    BOOST_REQUIRE(op_of<manage_projection>(m));
    BOOST_CHECK_EQUAL(op_of<manage_projection>(m)->name, "orders.summary");
    BOOST_CHECK_EQUAL(op_of<manage_projection>(m)->action, action);
  }
  auto dl = parse("GET", "/admin/projections/p/dead-letters", "");
  BOOST_REQUIRE(op_of<list_dead_letters>(dl));
  BOOST_CHECK_EQUAL(op_of<list_dead_letters>(dl)->from, 0u);
  BOOST_CHECK_EQUAL(op_of<list_dead_letters>(dl)->limit, 100u);
  auto page =
      parse("GET", "/admin/projections/p/dead-letters?from=7&limit=3", "");
  BOOST_REQUIRE(op_of<list_dead_letters>(page));
  BOOST_CHECK_EQUAL(op_of<list_dead_letters>(page)->from, 7u);
  BOOST_CHECK_EQUAL(op_of<list_dead_letters>(page)->limit, 3u);
  for (auto action : {"retry", "drop"}) {
    auto m = parse(
        "POST", std::string{"/admin/projections/p/dead-letters/42/"} + action,
        "");
    BOOST_REQUIRE(op_of<manage_dead_letter>(m));
    BOOST_CHECK_EQUAL(op_of<manage_dead_letter>(m)->name, "p");
    BOOST_CHECK_EQUAL(op_of<manage_dead_letter>(m)->position, 42u);
    BOOST_CHECK_EQUAL(op_of<manage_dead_letter>(m)->action, action);
  }
  auto code = [](const std::string& method, const std::string& target) {
    return code_of(parse(method, target, ""));
  };
  BOOST_CHECK_EQUAL(code("POST", "/health"), "method_not_allowed");
  BOOST_CHECK_EQUAL(code("DELETE", "/metrics"), "method_not_allowed");
  BOOST_CHECK_EQUAL(code("GET", "/health/x"), "not_found");
  BOOST_CHECK_EQUAL(code("POST", "/admin/projections"), "method_not_allowed");
  BOOST_CHECK_EQUAL(code("GET", "/admin"), "not_found");
  BOOST_CHECK_EQUAL(code("GET", "/admin/sagas"), "not_found");
  BOOST_CHECK_EQUAL(code("GET", "/admin/projections/p"), "not_found");
  BOOST_CHECK_EQUAL(code("POST", "/admin/projections/p/explode"), "not_found");
  BOOST_CHECK_EQUAL(code("GET", "/admin/projections/p/pause"),
                    "method_not_allowed");
  BOOST_CHECK_EQUAL(code("POST", "/admin/projections/p/dead-letters"),
                    "method_not_allowed");
  BOOST_CHECK_EQUAL(code("GET", "/admin/projections/p/dead-letters/1/retry"),
                    "method_not_allowed");
  BOOST_CHECK_EQUAL(code("POST", "/admin/projections/p/dead-letters/1/undo"),
                    "not_found");
  BOOST_CHECK_EQUAL(code("POST", "/admin/projections/p/dead-letters/x/drop"),
                    "invalid_query");
  BOOST_CHECK_EQUAL(code("GET", "/admin/projections/p/dead-letters?limit=0"),
                    "invalid_query");
  BOOST_CHECK_EQUAL(code("GET", "/admin/projections/p/dead-letters?from=-1"),
                    "invalid_query");
  BOOST_CHECK_EQUAL(code("GET", "/admin/projections/p/dead-letters?x=1"),
                    "invalid_query");
  BOOST_CHECK_EQUAL(code("POST", "/admin/projections/a%20b/pause"),
                    "invalid_id");
}

BOOST_AUTO_TEST_CASE(unknown_paths_and_methods_are_refused) {
  auto code = [](const std::string& method, const std::string& target) {
    return code_of(parse(method, target, ""));
  };
  BOOST_CHECK_EQUAL(code("GET", "/nope"), "not_found");
  BOOST_CHECK_EQUAL(status_of(parse("GET", "/nope", "")), 404u);
  BOOST_CHECK_EQUAL(code("GET", ""), "not_found");
  BOOST_CHECK_EQUAL(code("GET", "orders"), "not_found");
  BOOST_CHECK_EQUAL(code("GET", "/"), "not_found");
  BOOST_CHECK_EQUAL(code("GET", "/accounts/a1"), "not_found");
  BOOST_CHECK_EQUAL(code("GET", "/orders/o-1/x"), "not_found");
  BOOST_CHECK_EQUAL(code("POST", "/orders/o-1/cancel/now"), "not_found");
  BOOST_CHECK_EQUAL(code("GET", "/inventory"), "not_found");
  BOOST_CHECK_EQUAL(code("POST", "/inventory/s/restock"), "not_found");
  BOOST_CHECK_EQUAL(code("GET", "/inventory/s/stock/x"), "not_found");
  BOOST_CHECK_EQUAL(code("GET", "/fulfilments/o-1/steps"), "not_found");
  BOOST_CHECK_EQUAL(code("GET", "/totals/x"), "not_found");
  BOOST_CHECK_EQUAL(code("DELETE", "/orders"), "method_not_allowed");
  BOOST_CHECK_EQUAL(status_of(parse("PUT", "/orders", "")), 405u);
  BOOST_CHECK_EQUAL(code("DELETE", "/orders/o-1"), "method_not_allowed");
  BOOST_CHECK_EQUAL(code("POST", "/orders/o-1"), "method_not_allowed");
  BOOST_CHECK_EQUAL(code("GET", "/orders/o-1/cancel"), "method_not_allowed");
  BOOST_CHECK_EQUAL(code("POST", "/inventory/s"), "method_not_allowed");
  BOOST_CHECK_EQUAL(code("GET", "/inventory/s/stock"), "method_not_allowed");
  BOOST_CHECK_EQUAL(code("POST", "/totals"), "method_not_allowed");
  BOOST_CHECK_EQUAL(code("POST", "/fulfilments"), "method_not_allowed");
  BOOST_CHECK_EQUAL(code("POST", "/fulfilments/o-1"), "method_not_allowed");
  // A bad id in the path is named before the method.
  BOOST_CHECK_EQUAL(code("GET", "/orders/a%2F1"), "invalid_id");
  BOOST_CHECK_EQUAL(code("GET", "/orders//cancel"), "invalid_id");
  BOOST_CHECK_EQUAL(code("GET", "/inventory/s%20x"), "invalid_id");
  BOOST_CHECK_EQUAL(code("GET", "/inventory/" + std::string(65, 's')),
                    "invalid_id");
  BOOST_CHECK_EQUAL(code("GET", "/fulfilments/f!"), "invalid_id");
  BOOST_CHECK_EQUAL(code("POST", "/orders/o:1/cancel"), "invalid_id");
}

BOOST_AUTO_TEST_CASE(bodies_get_the_json_error_codes) {
  BOOST_CHECK_EQUAL(code_of(parse("POST", "/orders", "")), "malformed_json");
  BOOST_CHECK_EQUAL(code_of(parse("POST", "/orders", "{")), "malformed_json");
  BOOST_CHECK_EQUAL(code_of(parse("POST", "/orders", "[1]")), "malformed_json");
  BOOST_CHECK_EQUAL(code_of(parse("POST", "/orders", "\"o\"")),
                    "malformed_json");
  BOOST_CHECK_EQUAL(code_of(parse("POST", "/inventory/s/stock", "")),
                    "malformed_json");
  BOOST_CHECK_EQUAL(code_of(parse("POST", "/orders/o-1/cancel", "nope")),
                    "malformed_json");
  BOOST_CHECK_EQUAL(code_of(parse("POST", "/orders/o-1/cancel", "[]")),
                    "malformed_json");
  BOOST_CHECK_EQUAL(status_of(parse("POST", "/orders", "{")), 400u);
  for (auto field : {"id", "customer", "sku", "quantity", "unit_price"}) {
    auto body = nlohmann::json::parse("{" + valid_order + "}");
    body.erase(field);
    BOOST_CHECK_EQUAL(code_of(parse("POST", "/orders", body.dump())),
                      "missing_field");
    body[field] = nullptr;
    BOOST_CHECK_EQUAL(code_of(parse("POST", "/orders", body.dump())),
                      "missing_field");
    body[field] = true;
    BOOST_CHECK_EQUAL(code_of(parse("POST", "/orders", body.dump())),
                      "wrong_type");
  }
  BOOST_CHECK_EQUAL(code_of(parse("POST", "/inventory/s/stock", "{}")),
                    "missing_field");
  BOOST_CHECK_EQUAL(
      code_of(parse("POST", "/inventory/s/stock", R"({"quantity":"4"})")),
      "wrong_type");
  BOOST_CHECK_EQUAL(code_of(parse("POST", "/inventory/s/stock",
                                  R"({"quantity":4,"command_id":7})")),
                    "wrong_type");
  BOOST_CHECK_EQUAL(
      code_of(parse("POST", "/orders/o-1/cancel", R"({"command_id":[]})")),
      "wrong_type");
  // An explicit null command id is an absent one.
  BOOST_CHECK_EQUAL(
      code_of(parse("POST", "/orders/o-1/cancel", R"({"command_id":null})")),
      "ok");
  // Unknown fields are ignored.
  BOOST_CHECK_EQUAL(code_of(place(valid_order + R"(,"note":"gift")")), "ok");
}

BOOST_AUTO_TEST_CASE(order_fields_are_validated) {
  auto with = [](const char* field, const std::string& value) {
    auto body = nlohmann::json::parse("{" + valid_order + "}");
    body[field] = nlohmann::json::parse(value);
    return code_of(parse("POST", "/orders", body.dump()));
  };
  BOOST_CHECK_EQUAL(with("id", R"("o 1")"), "invalid_id");
  BOOST_CHECK_EQUAL(with("id", R"("")"), "invalid_id");
  BOOST_CHECK_EQUAL(with("id", '"' + std::string(65, 'o') + '"'), "invalid_id");
  BOOST_CHECK_EQUAL(with("id", '"' + std::string(64, 'o') + '"'), "ok");
  BOOST_CHECK_EQUAL(with("sku", R"("sku/7")"), "invalid_id");
  BOOST_CHECK_EQUAL(with("sku", R"("")"), "invalid_id");
  BOOST_CHECK_EQUAL(with("customer", R"("")"), "invalid_customer");
  BOOST_CHECK_EQUAL(with("customer", '"' + std::string(129, 'c') + '"'),
                    "invalid_customer");
  BOOST_CHECK_EQUAL(with("customer", '"' + std::string(128, 'c') + '"'), "ok");
  // Customers are names, not ids: spaces and non-ASCII are fine.
  BOOST_CHECK_EQUAL(with("customer", R"("Zoë van Dijk")"), "ok");
  for (auto bad : {"0", "-1", "1.5", "1e3", "1000001", "9223372036854775808",
                   "18446744073709551615", "-9223372036854775808"})
    BOOST_CHECK_MESSAGE(with("quantity", bad) == "invalid_quantity", bad);
  BOOST_CHECK_EQUAL(with("quantity", "1"), "ok");
  BOOST_CHECK_EQUAL(with("quantity", "1000000"), "ok");
  BOOST_CHECK_EQUAL(with("quantity", R"("3")"), "wrong_type");
  BOOST_CHECK_EQUAL(with("quantity", "[3]"), "wrong_type");
  for (auto bad : {"0", "-250", "2.5", "1000000001", "18446744073709551615"})
    BOOST_CHECK_MESSAGE(with("unit_price", bad) == "invalid_price", bad);
  BOOST_CHECK_EQUAL(with("unit_price", "1"), "ok");
  BOOST_CHECK_EQUAL(with("unit_price", "1000000000"), "ok");
  BOOST_CHECK_EQUAL(with("unit_price", R"({"eur":2})"), "wrong_type");
  // The first bad field, in the operation's order, is the one named.
  BOOST_CHECK_EQUAL(code_of(place(R"("id":"o 1","customer":"","quantity":0)")),
                    "invalid_id");
  BOOST_CHECK_EQUAL(
      code_of(place(R"("id":"o1","customer":"","sku":"s","quantity":0)")),
      "invalid_customer");
  BOOST_CHECK_EQUAL(code_of(place(R"("id":"o1","customer":"c","sku":"s",)"
                                  R"("quantity":0,"unit_price":0)")),
                    "invalid_quantity");
  auto stock = [](const std::string& body) {
    return code_of(parse("POST", "/inventory/s/stock", body));
  };
  BOOST_CHECK_EQUAL(stock(R"({"quantity":0})"), "invalid_quantity");
  BOOST_CHECK_EQUAL(stock(R"({"quantity":-3})"), "invalid_quantity");
  BOOST_CHECK_EQUAL(stock(R"({"quantity":0.5})"), "invalid_quantity");
  BOOST_CHECK_EQUAL(stock(R"({"quantity":1000001})"), "invalid_quantity");
  BOOST_CHECK_EQUAL(stock(R"({"quantity":5,"command_id":"a b"})"),
                    "invalid_id");
  BOOST_CHECK_EQUAL(
      code_of(parse("POST", "/orders/o-1/cancel", R"({"command_id":"x/y"})")),
      "invalid_id");
  // Errors say which field and what to send.
  auto err = std::get<client_error>(place(R"("id":"o1","customer":"c",)"
                                          R"("sku":"s","quantity":0,)"
                                          R"("unit_price":1)"));
  BOOST_CHECK_NE(err.message.find("quantity"), std::string::npos);
  BOOST_CHECK_NE(err.message.find("1000000"), std::string::npos);
}

BOOST_AUTO_TEST_CASE(limits_are_configurable) {
  limits lim;
  lim.max_quantity = 10;
  lim.max_unit_price = 500;
  lim.max_id = 4;
  lim.max_customer = 3;
  auto order = [&](const std::string& id, const std::string& customer,
                   int quantity, int price) {
    return code_of(place(R"("id":")" + id + R"(","customer":")" + customer +
                             R"(","sku":"s1","quantity":)" +
                             std::to_string(quantity) + R"(,"unit_price":)" +
                             std::to_string(price),
                         lim));
  };
  BOOST_CHECK_EQUAL(order("o1", "abc", 10, 500), "ok");
  BOOST_CHECK_EQUAL(order("o1", "abc", 11, 500), "invalid_quantity");
  BOOST_CHECK_EQUAL(order("o1", "abc", 10, 501), "invalid_price");
  BOOST_CHECK_EQUAL(order("o1234", "abc", 10, 500), "invalid_id");
  BOOST_CHECK_EQUAL(order("o1", "abcd", 10, 500), "invalid_customer");
  BOOST_CHECK_EQUAL(
      code_of(parse("POST", "/inventory/s1/stock", R"({"quantity":11})", lim)),
      "invalid_quantity");
  BOOST_CHECK_EQUAL(code_of(parse("GET", "/orders/o1234", "", lim)),
                    "invalid_id");
  BOOST_CHECK_EQUAL(code_of(parse("GET", "/inventory/s1234", "", lim)),
                    "invalid_id");
  BOOST_CHECK_EQUAL(code_of(parse("GET", "/orders?after=o1234", "", lim)),
                    "invalid_id");
  BOOST_CHECK_EQUAL(
      code_of(parse("POST", "/admin/projections/p1234/pause", "", lim)),
      "invalid_id");
  auto err = std::get<client_error>(parse("GET", "/orders/o1234", "", lim));
  BOOST_CHECK_NE(err.message.find("1 to 4"), std::string::npos);
}

// Mutates valid requests byte by byte (flips, cuts, insertions of JSON and
// URL punctuation and of random bytes): parse never throws, never crashes,
// and answers an operation or a 4xx error with a documented code.
BOOST_AUTO_TEST_CASE(fuzzed_requests_get_an_operation_or_a_4xx) {
  const std::vector<std::pair<std::string, std::string>> seeds = {
      {"/orders", "{" + valid_order + "}"},
      {"/orders/o-1/cancel", R"({"command_id":"c-1"})"},
      {"/orders/o-1/cancel", ""},
      {"/orders?status=placed&after=o-1&limit=10", ""},
      {"/orders/o-1", ""},
      {"/inventory/sku.7/stock", R"({"quantity":40,"command_id":"d-1"})"},
      {"/inventory/sku.7", ""},
      {"/totals", ""},
      {"/fulfilments?status=needs%5Fattention&after=o-3&limit=20", ""},
      {"/fulfilments/o-1", ""},
      {"/admin/projections/p/dead-letters?from=7&limit=3", ""},
      {"/admin/projections/p/dead-letters/42/retry", ""},
  };
  const std::string punct = std::string{"{}[]\",:0123456789-.eE\\ /?&=%+#"} +
                            std::string{"\x00\xff", 2};
  const std::set<std::string> documented = {
      "not_found",        "method_not_allowed", "malformed_json",
      "missing_field",    "wrong_type",         "invalid_id",
      "invalid_customer", "invalid_quantity",   "invalid_price",
      "invalid_query"};
  std::set<std::string> seen;
  std::mt19937_64 rng{20261125};
  size_t ops = 0;
  size_t errors = 0;
  for (int i = 0; i < 50000; ++i) {
    auto [target, body] = seeds[rng() % seeds.size()];
    auto& victim = (body.empty() || rng() % 3 == 0) ? target : body;
    auto edits = 1 + rng() % 4;
    for (size_t e = 0; e < edits && !victim.empty(); ++e) {
      auto pos = rng() % victim.size();
      switch (rng() % 4) {
        case 0:
          victim[pos] = static_cast<char>(rng() % 256);
          break;
        case 1:
          victim.erase(pos, 1 + rng() % 3);
          break;
        case 2:
          victim.insert(pos, 1, punct[rng() % punct.size()]);
          break;
        default:
          victim.resize(pos);
      }
    }
    const char* methods[] = {"POST", "GET", "PUT", ""};
    auto method = methods[rng() % 4];
    parsed result;
    BOOST_REQUIRE_NO_THROW(result = parse(method, target, body));
    if (auto* err = std::get_if<client_error>(&result)) {
      ++errors;
      BOOST_REQUIRE(err->status >= 400 && err->status < 500);
      BOOST_REQUIRE(!err->code.empty());
      BOOST_REQUIRE(!err->message.empty());
      BOOST_REQUIRE_MESSAGE(documented.count(err->code) == 1, err->code);
      seen.insert(err->code);
    } else {
      ++ops;
    }
  }
  BOOST_TEST_MESSAGE("fuzz: " << ops << " operations, " << errors
                              << " client errors");
  BOOST_CHECK_GT(ops, 0u);
  BOOST_CHECK_GT(errors, 0u);
  // The mutations reach the path, JSON and field checks alike.
  BOOST_CHECK_GE(seen.size(), 8u);
}

BOOST_AUTO_TEST_SUITE_END()
