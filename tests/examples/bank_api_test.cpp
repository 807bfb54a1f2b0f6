// The bank node's request mapping on its own: every endpoint, every client
// error, and a fuzz run over mutated requests.

#define BOOST_TEST_MODULE mnemo_examples
#include <boost/test/unit_test.hpp>

#include <random>

#include <caf/sec.hpp>
#include <nlohmann/json.hpp>

#include "../../examples/bank/bank_api.hpp"
#include "mnemo/http/service_support.hpp"
#include "mnemo/runtime/error.hpp"

using namespace bank::api;

namespace {

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

}  // namespace

BOOST_AUTO_TEST_SUITE(bank_api)

BOOST_AUTO_TEST_CASE(every_endpoint_maps_to_its_operation) {
  auto open = parse("POST", "/accounts", R"({"id":"a1","owner":"alice"})");
  BOOST_REQUIRE(op_of<open_account>(open));
  BOOST_CHECK_EQUAL(op_of<open_account>(open)->owner, "alice");
  auto dep = parse("POST", "/accounts/a1/deposits",
                   R"({"amount":100,"command_id":"c-1"})");
  BOOST_REQUIRE(op_of<move_money>(dep));
  BOOST_CHECK(op_of<move_money>(dep)->deposit);
  BOOST_CHECK_EQUAL(op_of<move_money>(dep)->amount, 100);
  BOOST_CHECK_EQUAL(op_of<move_money>(dep)->command_id, "c-1");
  auto wd = parse("POST", "/accounts/a1/withdrawals", R"({"amount":7})");
  BOOST_REQUIRE(op_of<move_money>(wd));
  BOOST_CHECK(!op_of<move_money>(wd)->deposit);
  BOOST_CHECK(op_of<move_money>(wd)->command_id.empty());
  BOOST_CHECK(op_of<close_account>(parse("POST", "/accounts/a1/close", "")));
  BOOST_CHECK_EQUAL(op_of<close_account>(parse("POST", "/accounts/a1/close",
                                               R"({"command_id":"x"})"))
                        ->command_id,
                    "x");
  BOOST_CHECK(op_of<get_account>(parse("GET", "/accounts/a1", "")));
  BOOST_CHECK(op_of<get_account>(parse("GET", "/accounts/a1/?x=1", "")));
  auto tr = parse("POST", "/transfers",
                  R"({"id":"t1","from":"a1","to":"a2","amount":50})");
  BOOST_REQUIRE(op_of<start_transfer>(tr));
  BOOST_CHECK_EQUAL(op_of<start_transfer>(tr)->to, "a2");
  BOOST_CHECK(op_of<get_transfer>(parse("GET", "/transfers/t1", "")));
  auto listing =
      parse("GET", "/transfers?status=needs_attention&after=t7&limit=5", "");
  BOOST_REQUIRE(op_of<list_transfers>(listing));
  BOOST_CHECK_EQUAL(op_of<list_transfers>(listing)->phase, "needs_attention");
  BOOST_CHECK_EQUAL(op_of<list_transfers>(listing)->after, "t7");
  BOOST_CHECK_EQUAL(op_of<list_transfers>(listing)->limit, 5u);
  BOOST_CHECK(op_of<get_balance>(parse("GET", "/balances/a1", "")));
  BOOST_CHECK(op_of<get_totals>(parse("GET", "/balances", "")));
  BOOST_CHECK(op_of<get_cluster_totals>(parse("GET", "/cluster/balances", "")));
  BOOST_CHECK(op_of<get_health>(parse("GET", "/health", "")));
  BOOST_CHECK(op_of<get_metrics>(parse("GET", "/metrics", "")));
  BOOST_CHECK(op_of<list_projections>(parse("GET", "/admin/projections", "")));
  auto pause = parse("POST", "/admin/projections/bank.balances/pause", "");
  BOOST_REQUIRE(op_of<manage_projection>(pause));
  BOOST_CHECK_EQUAL(op_of<manage_projection>(pause)->name, "bank.balances");
  BOOST_CHECK_EQUAL(op_of<manage_projection>(pause)->action, "pause");
  auto dl =
      parse("GET", "/admin/projections/p/dead-letters?from=7&limit=3", "");
  BOOST_REQUIRE(op_of<list_dead_letters>(dl));
  BOOST_CHECK_EQUAL(op_of<list_dead_letters>(dl)->from, 7u);
  BOOST_CHECK_EQUAL(op_of<list_dead_letters>(dl)->limit, 3u);
  auto retry = parse("POST", "/admin/projections/p/dead-letters/42/retry", "");
  BOOST_REQUIRE(op_of<manage_dead_letter>(retry));
  BOOST_CHECK_EQUAL(op_of<manage_dead_letter>(retry)->position, 42u);
  BOOST_CHECK_EQUAL(op_of<manage_dead_letter>(retry)->action, "retry");
  BOOST_CHECK_EQUAL(code_of(parse("POST", "/admin/projections/p/explode", "")),
                    "not_found");
  BOOST_CHECK_EQUAL(code_of(parse("GET", "/admin/projections/p/pause", "")),
                    "method_not_allowed");
  BOOST_CHECK_EQUAL(
      code_of(parse("POST", "/admin/projections/p/dead-letters/x/drop", "")),
      "invalid_query");
  BOOST_CHECK_EQUAL(
      code_of(parse("GET", "/admin/projections/p/dead-letters?limit=0", "")),
      "invalid_query");
  auto shard = parse("GET", "/admin/shards/17", "");
  BOOST_REQUIRE(op_of<get_shard>(shard));
  BOOST_CHECK_EQUAL(op_of<get_shard>(shard)->shard, 17u);
  BOOST_CHECK_EQUAL(code_of(parse("GET", "/admin/shards/x", "")),
                    "invalid_query");
  BOOST_CHECK_EQUAL(code_of(parse("GET", "/admin/shards/99999999999", "")),
                    "invalid_query");
  BOOST_CHECK_EQUAL(code_of(parse("POST", "/admin/shards/1", "")),
                    "method_not_allowed");
  BOOST_CHECK_EQUAL(code_of(parse("GET", "/admin/shards", "")), "not_found");
}

BOOST_AUTO_TEST_CASE(client_errors_are_named_precisely) {
  BOOST_CHECK_EQUAL(code_of(parse("GET", "/nope", "")), "not_found");
  BOOST_CHECK_EQUAL(status_of(parse("GET", "/nope", "")), 404u);
  BOOST_CHECK_EQUAL(code_of(parse("GET", "", "")), "not_found");
  BOOST_CHECK_EQUAL(code_of(parse("GET", "/accounts/a1/x/y", "")), "not_found");
  BOOST_CHECK_EQUAL(code_of(parse("DELETE", "/accounts/a1", "")),
                    "method_not_allowed");
  BOOST_CHECK_EQUAL(status_of(parse("DELETE", "/transfers", "")), 405u);
  BOOST_CHECK_EQUAL(code_of(parse("GET", "/transfers", "")), "invalid_query");
  BOOST_CHECK_EQUAL(code_of(parse("GET", "/transfers?status=lost", "")),
                    "invalid_query");
  BOOST_CHECK_EQUAL(
      code_of(parse("GET", "/transfers?status=running&limit=0", "")),
      "invalid_query");
  BOOST_CHECK_EQUAL(
      code_of(parse("GET", "/transfers?status=running&limit=99999", "")),
      "invalid_query");
  BOOST_CHECK_EQUAL(code_of(parse("GET", "/transfers?status=running&x=1", "")),
                    "invalid_query");
  BOOST_CHECK_EQUAL(
      code_of(parse("GET", "/transfers?status=running&after=a%20b", "")),
      "invalid_id");
  BOOST_CHECK_EQUAL(code_of(parse("POST", "/accounts", "{")), "malformed_json");
  BOOST_CHECK_EQUAL(code_of(parse("POST", "/accounts", "[1]")),
                    "malformed_json");
  BOOST_CHECK_EQUAL(code_of(parse("POST", "/accounts", R"({"id":"a1"})")),
                    "missing_field");
  BOOST_CHECK_EQUAL(
      code_of(parse("POST", "/accounts", R"({"id":"a1","owner":null})")),
      "missing_field");
  BOOST_CHECK_EQUAL(
      code_of(parse("POST", "/accounts", R"({"id":7,"owner":"x"})")),
      "wrong_type");
  BOOST_CHECK_EQUAL(
      code_of(parse("POST", "/accounts", R"({"id":"a 1","owner":"x"})")),
      "invalid_id");
  BOOST_CHECK_EQUAL(
      code_of(parse("POST", "/accounts",
                    R"({"id":")" + std::string(65, 'a') + R"(","owner":"x"})")),
      "invalid_id");
  BOOST_CHECK_EQUAL(
      code_of(parse("POST", "/accounts", R"({"id":"a1","owner":""})")),
      "invalid_owner");
  BOOST_CHECK_EQUAL(code_of(parse("GET", "/accounts/a%2F1", "")), "invalid_id");
  auto amount = [](const std::string& value) {
    return code_of(
        parse("POST", "/accounts/a1/deposits", R"({"amount":)" + value + "}"));
  };
  BOOST_CHECK_EQUAL(amount("0"), "invalid_amount");
  BOOST_CHECK_EQUAL(amount("-5"), "invalid_amount");
  BOOST_CHECK_EQUAL(amount("1.5"), "invalid_amount");
  BOOST_CHECK_EQUAL(amount("1e3"), "invalid_amount");
  BOOST_CHECK_EQUAL(amount("1000000000001"), "invalid_amount");
  BOOST_CHECK_EQUAL(amount("18446744073709551615"), "invalid_amount");
  BOOST_CHECK_EQUAL(amount("\"5\""), "wrong_type");
  BOOST_CHECK_EQUAL(amount("true"), "wrong_type");
  BOOST_CHECK_EQUAL(amount("1000000000000"), "ok");
  BOOST_CHECK_EQUAL(
      code_of(parse("POST", "/transfers",
                    R"({"id":"t1","from":"a1","to":"a1","amount":5})")),
      "same_account");
  BOOST_CHECK_EQUAL(code_of(parse("POST", "/accounts/a1/deposits",
                                  R"({"amount":5,"command_id":"bad id"})")),
                    "invalid_id");
  limits small;
  small.max_amount = 10;
  BOOST_CHECK_EQUAL(code_of(parse("POST", "/accounts/a1/deposits",
                                  R"({"amount":11})", small)),
                    "invalid_amount");
}

// Mutates valid requests byte by byte (flips, cuts, insertions of JSON
// punctuation and of random bytes): parse never throws, never crashes, and
// answers an operation or a 4xx error with a code.
BOOST_AUTO_TEST_CASE(fuzzed_requests_get_an_operation_or_a_4xx) {
  const std::vector<std::pair<std::string, std::string>> seeds = {
      {"/accounts", R"({"id":"a1","owner":"alice"})"},
      {"/accounts/a1/deposits", R"({"amount":100,"command_id":"c-1"})"},
      {"/accounts/a1/withdrawals", R"({"amount":5})"},
      {"/accounts/a1/close", R"({"command_id":"z"})"},
      {"/transfers", R"({"id":"t1","from":"a1","to":"a2","amount":50})"},
  };
  const std::string punct = "{}[]\",:0123456789-.eE\\ \x00\xff";
  std::mt19937_64 rng{20261124};
  size_t ops = 0;
  size_t errors = 0;
  for (int i = 0; i < 50000; ++i) {
    auto [target, body] = seeds[rng() % seeds.size()];
    auto& victim = (rng() % 4 == 0) ? target : body;
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
    const char* methods[] = {"POST", "GET", "PUT"};
    auto method = methods[rng() % 3];
    parsed result;
    BOOST_REQUIRE_NO_THROW(result = parse(method, target, body));
    if (auto* err = std::get_if<client_error>(&result)) {
      ++errors;
      BOOST_REQUIRE(err->status >= 400 && err->status < 500);
      BOOST_REQUIRE(!err->code.empty());
    } else {
      ++ops;
    }
  }
  BOOST_TEST_MESSAGE("fuzz: " << ops << " operations, " << errors
                              << " client errors");
  BOOST_CHECK_GT(ops, 0u);
  BOOST_CHECK_GT(errors, 0u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(bank_api)

// A lost owner is a 503 whichever way CAF reports it; an unknown error is a
// 500 that names the error.
BOOST_AUTO_TEST_CASE(a_lost_owner_is_503_and_an_unknown_error_is_named) {
  auto json_of = [](const mnemo::http::response& r) {
    return nlohmann::json::parse(r.body);
  };
  for (auto code :
       {caf::sec::request_receiver_down, caf::sec::no_route_to_receiving_node,
        caf::sec::socket_disconnected, caf::sec::connection_timeout}) {
    auto r = mnemo::http::runtime_error_response(caf::error{code});
    BOOST_CHECK_EQUAL(r.status, 503u);
    BOOST_CHECK_EQUAL(json_of(r)["error"], "owner_lost");
  }
  auto routed = mnemo::runtime::as_owner_lost(caf::sec::request_receiver_down,
                                              "a request to account 'a1'");
  auto r = mnemo::http::runtime_error_response(routed);
  BOOST_CHECK_EQUAL(r.status, 503u);
  BOOST_CHECK_EQUAL(json_of(r)["error"], "owner_lost");
  auto unavailable = mnemo::http::runtime_error_response(
      mnemo::runtime::make_error(mnemo::runtime::errc::owner_unavailable,
                                 "member 'm2' is not connected"));
  BOOST_CHECK_EQUAL(unavailable.status, 503u);
  BOOST_CHECK_EQUAL(json_of(unavailable)["error"], "owner_unavailable");
  auto timeout = mnemo::http::runtime_error_response(caf::sec::request_timeout);
  BOOST_CHECK_EQUAL(json_of(timeout)["error"], "timeout");
  auto unknown = mnemo::http::runtime_error_response(caf::sec::unexpected_message);
  BOOST_CHECK_EQUAL(unknown.status, 500u);
  BOOST_CHECK_EQUAL(json_of(unknown)["error"], "internal");
  BOOST_CHECK_EQUAL(json_of(unknown)["message"], "system:unexpected_message");
}

BOOST_AUTO_TEST_SUITE_END()
