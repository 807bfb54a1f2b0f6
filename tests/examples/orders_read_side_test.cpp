// The read side of the order-fulfilment example: the simulated payment
// gateway (deterministic decisions, an at-least-once projection that sends
// commands) and the order-summary read model (an exactly-once projection
// with an index by status, totals, paging and rebuild).

#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>

#include "../../examples/orders/order.hpp"
#include "../../examples/orders/order_summary.hpp"
#include "../../examples/orders/payment.hpp"
#include "../../examples/orders/payment_gateway.hpp"
#include "../../examples/orders/shipment.hpp"
#include "mnemo/actors/projection.hpp"
#include "mnemo/actors/testkit.hpp"
#include "mnemo/persistence/table_store.hpp"

using namespace mnemo;
using namespace orders;
using persistence::table_store;

namespace {

template <class T>
std::string reason(const caf::expected<T>& x) {
  return x ? std::string{"ok"} : runtime::describe(x.error());
}

template <class T>
std::string reason(const persistence::expected<T>& x) {
  return x ? std::string{"ok"} : x.error().to_string();
}

using rows = std::vector<std::pair<std::string, std::string>>;

// An aggregate fixture that also runs projections and stops them first.
template <class A>
struct projection_fixture : actors::aggregate_fixture<A> {
  using base = actors::aggregate_fixture<A>;
  std::vector<caf::actor> projections;

  ~projection_fixture() {
    for (auto& p : projections)
      caf::anon_send_exit(p, caf::exit_reason::user_shutdown);
    this->run();
  }

  caf::actor spawn(actors::projection_spec spec) {
    actors::projection_context ctx{
        &this->journal(), this->context().completions, this->event_bus()};
    auto p = actors::spawn_projection(this->system(), ctx, std::move(spec));
    BOOST_REQUIRE(p);
    projections.push_back(*p);
    this->run();
    return *p;
  }

  // Sends a management request answered with nothing (caf::unit).
  template <class... Ts>
  caf::expected<caf::unit_t> manage(const caf::actor& p, Ts... xs) {
    auto res = std::make_shared<caf::expected<caf::unit_t>>(
        runtime::make_error(runtime::errc::entity_stopped, "no reply"));
    this->system().spawn([=](caf::event_based_actor* self) {
      self->request(p, caf::infinite, xs...)
          .then([=]() { *res = caf::unit; },
                [=](caf::error& e) { *res = std::move(e); });
    });
    this->run();
    return *res;
  }

  // Appends events of aggregate `B` to the stream of `id`.
  template <class B>
  void append(const std::string& id, std::vector<typename B::event> events) {
    actors::variant_codec<typename B::event> codec{this->registry()};
    std::vector<persistence::new_event> batch;
    for (auto& ev : events) {
      auto encoded = codec.encode(ev);
      BOOST_REQUIRE_MESSAGE(encoded, reason(encoded));
      batch.push_back(std::move(*encoded));
    }
    auto res =
        this->journal().append(actors::stream_of<B>(id), std::move(batch),
                               persistence::expected_version::any());
    BOOST_REQUIRE_MESSAGE(res, reason(res));
    this->run();
  }

  rows dump(const std::string& table) {
    rows result;
    auto err = this->journal().read([&](persistence::read_txn& txn) {
      auto scanned = table_store::scan_in(
          txn, table, "", "", table_store::unlimited,
          [&](std::string_view k, std::string_view v) {
            result.emplace_back(std::string{k}, std::string{v});
            return true;
          });
      return scanned ? persistence::error{} : scanned.error();
    });
    BOOST_REQUIRE(!err);
    return result;
  }
};

}  // namespace

// -- payment gateway ----------------------------------------------------------

BOOST_AUTO_TEST_SUITE(payment_gateway_projection)

BOOST_AUTO_TEST_CASE(decisions_are_deterministic) {
  for (int i = 0; i < 100; ++i) {
    auto id = "o-" + std::to_string(i);
    BOOST_CHECK_EQUAL(gateway_declines(id, 0.5, 7),
                      gateway_declines(id, 0.5, 7));
  }
  // Another seed picks other orders.
  int differ = 0;
  for (int i = 0; i < 1000; ++i) {
    auto id = "o-" + std::to_string(i);
    differ += gateway_declines(id, 0.5, 1) != gateway_declines(id, 0.5, 2);
  }
  BOOST_CHECK_GT(differ, 300);
}

BOOST_AUTO_TEST_CASE(decline_fraction_matches_the_failure_rate) {
  int declined = 0;
  int never = 0;
  int always = 0;
  for (int i = 0; i < 10'000; ++i) {
    auto id = "order-" + std::to_string(i);
    declined += gateway_declines(id, 0.3, 42);
    never += gateway_declines(id, 0.0, 42);
    always += gateway_declines(id, 1.0, 42);
  }
  BOOST_CHECK_MESSAGE(std::abs(declined / 10'000.0 - 0.3) <= 0.02,
                      declined << " of 10000 declined at rate 0.3");
  BOOST_CHECK_EQUAL(never, 0);
  BOOST_CHECK_EQUAL(always, 10'000);
  BOOST_CHECK(!gateway_declines("x", -1.0, 0));
  BOOST_CHECK(
      !gateway_declines("x", std::numeric_limits<double>::quiet_NaN(), 0));
  BOOST_CHECK(gateway_declines("x", 2.0, 0));
}

BOOST_AUTO_TEST_CASE(stream_ids_map_back_to_order_ids) {
  BOOST_CHECK(entity_id_of<payment>("payment-o-17") == std::string{"o-17"});
  BOOST_CHECK(entity_id_of<payment>(actors::stream_of<payment>("a-b")) ==
              std::string{"a-b"});
  BOOST_CHECK(!entity_id_of<payment>("payment-"));
  BOOST_CHECK(!entity_id_of<payment>("order-o1"));
  BOOST_CHECK(!entity_id_of<payment>("payments-o1"));
  BOOST_CHECK_EQUAL(gateway_command_id("payment-o1"), "payment-o1/gateway");
}

BOOST_AUTO_TEST_CASE(requested_payments_are_captured_or_declined) {
  projection_fixture<payment> f;
  auto registry = f.spawn_registry();
  auto flip = std::make_shared<bool>(false);
  auto calls = std::make_shared<int>(0);
  gateway_options opts;
  opts.decide = [flip, calls](const std::string& id) {
    ++*calls;
    return (id == "o2") != *flip;
  };
  auto gateway = f.spawn(payment_gateway(registry, opts));
  auto o1 = f.route(registry, "o1", request_payment{"alice", 500});
  auto o2 = f.route(registry, "o2", request_payment{"bob", 700});
  BOOST_REQUIRE_MESSAGE(o1, reason(o1));
  BOOST_REQUIRE_MESSAGE(o2, reason(o2));
  f.run();
  BOOST_CHECK_EQUAL(*calls, 2);
  auto e1 = f.events("o1");
  BOOST_REQUIRE(e1);
  BOOST_REQUIRE_EQUAL(e1->size(), 2u);
  BOOST_CHECK(std::holds_alternative<payment_captured>(e1->back()));
  auto e2 = f.events("o2");
  BOOST_REQUIRE(e2);
  BOOST_REQUIRE_EQUAL(e2->size(), 2u);
  BOOST_REQUIRE(std::holds_alternative<payment_declined>(e2->back()));
  BOOST_CHECK_EQUAL(std::get<payment_declined>(e2->back()).reason,
                    "card declined");
  // The decision carries the gateway's command id.
  auto stored = f.journal().read_stream("payment-o1", 2, 2, 1);
  BOOST_REQUIRE(stored && stored->size() == 1);
  BOOST_CHECK_EQUAL((*stored)[0].metadata.at("mnemo.command"),
                    "payment-o1/gateway");
  // Delivered again (offset reset) with the opposite decision: the command
  // id was processed, so nothing changes.
  *flip = true;
  BOOST_REQUIRE(f.manage(gateway, actors::reset_atom::value, uint64_t{0}));
  f.run();
  BOOST_CHECK_EQUAL(*calls, 4);
  BOOST_CHECK_EQUAL(f.events("o1")->size(), 2u);
  BOOST_CHECK_EQUAL(f.events("o2")->size(), 2u);
  auto st = f.template request<actors::projection_status>(
      gateway, actors::status_atom::value);
  BOOST_REQUIRE(st);
  BOOST_CHECK_EQUAL(st->offset, f.journal().head_position());
  BOOST_CHECK(st->last_error.empty());
}

BOOST_AUTO_TEST_CASE(failure_rate_and_seed_drive_the_default_decision) {
  projection_fixture<payment> f;
  auto registry = f.spawn_registry();
  gateway_options opts;
  opts.failure_rate = 0.3;
  opts.seed = 9;
  f.spawn(payment_gateway(registry, opts));
  for (int i = 0; i < 20; ++i) {
    auto id = "o" + std::to_string(i);
    BOOST_REQUIRE(f.route(registry, id, request_payment{"c", 10}));
  }
  f.run();
  for (int i = 0; i < 20; ++i) {
    auto id = "o" + std::to_string(i);
    auto st = f.route(registry, id, refund_payment{});
    BOOST_REQUIRE_MESSAGE(st, reason(st));
    // Declined payments stay declined; captured ones are now refunded.
    BOOST_CHECK_EQUAL(st->status,
                      gateway_declines(id, 0.3, 9) ? "declined" : "refunded");
  }
}

BOOST_AUTO_TEST_SUITE_END()

// -- order summary ------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(order_summary_model)

namespace {

struct summary_fixture : projection_fixture<order> {
  summary_fixture() {
    mnemo::actors::register_types<payment>(registry());
    mnemo::actors::register_types<shipment>(registry());
  }

  // Five orders in every state; o5 has only a payment.
  void history() {
    append<order>("o1", {order_placed{"alice", "sku-1", 2, 500}});
    append<payment>("o1", {payment_requested{"alice", 1000}});
    append<order>("o2", {order_placed{"bob", "sku-2", 1, 300}});
    append<payment>("o1", {payment_captured{}});
    append<order>("o1", {order_accepted{}});
    append<payment>("o2", {payment_requested{"bob", 300}});
    append<payment>("o2", {payment_declined{"card declined"}});
    append<order>("o2", {order_cancelled{"payment declined"}});
    append<shipment>("o1", {shipment_created{"sku-1", 2, "trk-o1"}});
    append<order>("o1", {order_completed{"trk-o1"}});
    append<order>("o3", {order_placed{"carol", "sku-1", 5, 100}});
    append<order>("o3", {order_accepted{}});
    append<order>("o4", {order_placed{"dave", "sku-3", 1, 1000}});
    append<payment>("o5", {payment_requested{"erin", 50}});
  }

  std::vector<std::string> ids(const std::optional<std::string>& status,
                               const std::string& after, size_t limit) {
    auto listed = list_orders(journal(), status, after, limit);
    BOOST_REQUIRE_MESSAGE(listed, reason(listed));
    std::vector<std::string> result;
    for (auto& row : *listed) result.push_back(row.id);
    return result;
  }

  order_summary row(const std::string& id) {
    auto found = get_order(journal(), id);
    BOOST_REQUIRE_MESSAGE(found, reason(found));
    BOOST_REQUIRE_MESSAGE(*found, "no row for " << id);
    return **found;
  }
};

using strings = std::vector<std::string>;

}  // namespace

BOOST_AUTO_TEST_CASE(rows_follow_order_payment_and_shipment_events) {
  summary_fixture f;
  f.history();
  f.spawn(order_summary_projection(f.registry()));
  auto o1 = f.row("o1");
  BOOST_CHECK_EQUAL(o1.customer, "alice");
  BOOST_CHECK_EQUAL(o1.sku, "sku-1");
  BOOST_CHECK_EQUAL(o1.quantity, 2);
  BOOST_CHECK_EQUAL(o1.amount, 1000);
  BOOST_CHECK_EQUAL(o1.status, "completed");
  BOOST_CHECK_EQUAL(o1.payment, "captured");
  BOOST_CHECK_EQUAL(o1.tracking, "trk-o1");
  auto placed = f.journal().read_stream("order-o1", 1, 1, 1);
  BOOST_REQUIRE(placed && placed->size() == 1);
  BOOST_CHECK_EQUAL(o1.placed_at_ms, (*placed)[0].timestamp_us / 1000);
  BOOST_CHECK_GT(o1.placed_at_ms, 0);
  auto last = f.journal().read_stream("order-o1", 3, 3, 1);
  BOOST_REQUIRE(last && last->size() == 1);
  BOOST_CHECK_EQUAL(o1.updated_position, (*last)[0].position);
  auto o2 = f.row("o2");
  BOOST_CHECK_EQUAL(o2.status, "cancelled");
  BOOST_CHECK_EQUAL(o2.payment, "declined");
  BOOST_CHECK_EQUAL(o2.reason, "payment declined");
  BOOST_CHECK_EQUAL(f.row("o3").status, "accepted");
  BOOST_CHECK_EQUAL(f.row("o4").payment, "none");
  auto o5 = f.row("o5");
  BOOST_CHECK(o5.status.empty());
  BOOST_CHECK_EQUAL(o5.payment, "requested");
  auto missing = get_order(f.journal(), "o9");
  BOOST_REQUIRE(missing);
  BOOST_CHECK(!*missing);
}

BOOST_AUTO_TEST_CASE(index_by_status_totals_and_paging) {
  summary_fixture f;
  f.history();
  f.spawn(order_summary_projection(f.registry()));
  using namespace std::string_literals;
  BOOST_CHECK((f.dump(by_status_table) == rows{{"accepted\0o3"s, ""},
                                               {"cancelled\0o2"s, ""},
                                               {"completed\0o1"s, ""},
                                               {"placed\0o4"s, ""}}));
  auto totals = order_totals(f.journal());
  BOOST_REQUIRE_MESSAGE(totals, reason(totals));
  BOOST_CHECK((
      totals->by_status ==
      std::map<std::string, int64_t>{
          {"accepted", 1}, {"cancelled", 1}, {"completed", 1}, {"placed", 1}}));
  BOOST_CHECK_EQUAL(totals->revenue, 1000);
  // o5 has a payment but no placement: not an order yet (GET /orders/o5
  // answers 404 too), so no listing shows it.
  BOOST_CHECK((f.ids(std::nullopt, "", 100) == strings{"o1", "o2", "o3", "o4"}));
  BOOST_CHECK((f.ids(std::nullopt, "o3", 2) == strings{"o4"}));
  BOOST_CHECK((f.ids(std::nullopt, "", 2) == strings{"o1", "o2"}));
  BOOST_CHECK((f.ids(std::nullopt, "o2", 2) == strings{"o3", "o4"}));
  BOOST_CHECK((f.ids(std::nullopt, "o5", 2).empty()));
  BOOST_CHECK((f.ids(std::nullopt, "", 0).empty()));
  BOOST_CHECK((f.ids("accepted"s, "", 10) == strings{"o3"}));
  BOOST_CHECK((f.ids("placed"s, "", 10) == strings{"o4"}));
  BOOST_CHECK((f.ids("placed"s, "o4", 10).empty()));
  BOOST_CHECK((f.ids("place"s, "", 10).empty()));
  BOOST_CHECK((f.ids("refunded"s, "", 10).empty()));
  // Live: more orders of one status, paged.
  f.append<order>("o4", {order_cancelled{"changed mind"}});
  f.append<order>("o6", {order_placed{"fay", "sku-1", 1, 1}});
  f.append<order>("o6", {order_cancelled{"duplicate"}});
  BOOST_CHECK((f.ids("cancelled"s, "", 2) == strings{"o2", "o4"}));
  BOOST_CHECK((f.ids("cancelled"s, "o4", 2) == strings{"o6"}));
  totals = order_totals(f.journal());
  BOOST_REQUIRE(totals);
  BOOST_CHECK_EQUAL(totals->by_status.count("placed"), 0u);
  BOOST_CHECK_EQUAL(totals->by_status.at("cancelled"), 3);
  BOOST_CHECK_EQUAL(totals->revenue, 1000);
}

BOOST_AUTO_TEST_CASE(rebuild_gives_identical_tables) {
  summary_fixture f;
  f.history();
  auto p = f.spawn(order_summary_projection(f.registry()));
  auto tables = {summary_table, by_status_table, totals_table};
  std::vector<rows> before;
  for (auto* t : tables) {
    before.push_back(f.dump(t));
    BOOST_CHECK(!before.back().empty());
  }
  BOOST_REQUIRE(f.manage(p, actors::rebuild_atom::value));
  f.run();
  size_t i = 0;
  for (auto* t : tables) {
    BOOST_CHECK_MESSAGE(f.dump(t) == before[i], "table " << t << " differs");
    ++i;
  }
  // Clearing empties all three.
  auto err = f.journal().write(
      [](persistence::write_txn& txn) { return clear_order_summary(txn); });
  BOOST_REQUIRE(!err);
  for (auto* t : tables) BOOST_CHECK(f.dump(t).empty());
}

BOOST_AUTO_TEST_CASE(foreign_streams_are_rejected) {
  summary_fixture f;
  persistence::event_envelope env;
  env.stream_id = "account-1";
  env.type = "order.placed";
  env.position = 7;
  auto err = f.journal().write([&](persistence::write_txn& txn) {
    return apply_order_summary(txn, f.registry(), env);
  });
  BOOST_CHECK(err.code() == persistence::errc::invalid_argument);
  BOOST_CHECK(f.dump(summary_table).empty());
}

BOOST_AUTO_TEST_SUITE_END()
